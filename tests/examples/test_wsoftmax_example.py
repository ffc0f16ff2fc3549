import json

import keras
import numpy as np
import pytest

from keras_dynfilt.layers import WSoftmaxHead
from tests import scripts

# End-to-end example runs: outside `make test-fast`.
pytestmark = pytest.mark.slow


def load_script():
    return scripts.load_script("examples/wsoftmax/train.py")


@pytest.mark.parametrize(
    "flags",
    [
        ["--head", "softmax"],
        ["--head", "wsoftmax", "--alpha", "1.5", "--softmax-epochs", "1"],
        pytest.param(
            ["--head", "wsoftmax", "--alpha", "1.0", "--softmax-epochs", "1",
             "--strategy", "mirrored", "--jit-compile", "true"],
            marks=pytest.mark.tensorflow,
        ),
    ],
)
def test_example_smoke_run(tmp_path, flags):
    script = load_script()
    results = script.main(
        [
            "--dataset", "digits", "--epochs", "2", "--steps-per-epoch", "3",
            "--batch-size", "32", "--fc-multiple", "2", "--verbose", "0",
            "--output-dir", str(tmp_path), *flags,
        ]
    )
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["fc_width"] == 18 and saved["min_feature_dim"] == 9
    assert len(saved["history"]["loss"]) == 2
    for split in ("test", "train"):
        angles = saved["mean_angle_degrees"][split]
        assert len(angles["per_class"]) == 10
        assert 0.0 <= angles["mean"] <= 180.0
    assert results["test"]["accuracy"] == saved["test"]["accuracy"]


def test_positive_target_head_matches_wsoftmax_where_target_is_positive():
    script = load_script()
    rng = np.random.default_rng(0)
    features = rng.normal(size=(64, 8)).astype("float32")
    labels = rng.integers(0, 5, size=64).astype("int32")
    paper = WSoftmaxHead(5, alpha=1.5)
    paper.build(features.shape)
    variant = script.PositiveTargetWSoftmaxHead(5, alpha=1.5)
    variant.build(features.shape)
    variant.kernel.assign(paper.kernel)
    plain = keras.ops.convert_to_numpy(paper(features))
    a = keras.ops.convert_to_numpy(paper(features, labels, training=True))
    b = keras.ops.convert_to_numpy(variant(features, labels, training=True))
    positive = plain[np.arange(64), labels] > 0
    assert 0 < positive.sum() < 64
    np.testing.assert_allclose(b[positive], a[positive], rtol=1e-6)
    assert not np.allclose(b[~positive], a[~positive])
