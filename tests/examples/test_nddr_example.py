import json
import pathlib

import keras
import pytest

from tests import scripts

# End-to-end example runs: outside `make test-fast`.
pytestmark = pytest.mark.slow

FASHION_MNIST = pathlib.Path("/usr/share/datasets/fashion-mnist")


def _load_script():
    return scripts.load_script("examples/nddr/train.py")


@pytest.mark.skipif(not FASHION_MNIST.is_dir(), reason="no Fashion-MNIST")
def test_nddr_shortcut_smoke_run(tmp_path):
    script = _load_script()
    results = script.main([
        "--method", "nddr_shortcut", "--epochs", "1", "--limit-train", "256",
        "--steps-per-epoch", "2", "--batch-size", "32", "--widths", "4,8",
        "--output-dir", str(tmp_path), "--verbose", "0"])
    saved = json.loads((tmp_path / "results.json").read_text())
    assert set(saved["test"]) >= {"label_accuracy", "rotation_accuracy"}
    assert saved["fusion_params"] > 0
    assert results["arguments"]["method"] == "nddr_shortcut"


@pytest.mark.tensorflow
def test_rotation_targets_are_deterministic_and_rotate():
    import numpy as np
    import tensorflow as tf

    script = _load_script()
    image = np.zeros((9, 9, 1), "float32")
    image[1, 4, 0] = 1.0  # a dot above the centre
    map_fn = script.make_map_fn(4, 0)
    first, second = map_fn(image, 3), map_fn(image, 3)
    assert int(first[1]["rotation"]) == int(second[1]["rotation"])
    assert int(first[1]["label"]) == 3
    # A quarter turn moves the dot from above the centre to one side.
    quarter = keras.ops.convert_to_numpy(
        script.rotate(tf.constant(image), tf.constant(np.pi / 2)))
    assert quarter[4, 1, 0] > 0.99 or quarter[4, 7, 0] > 0.99
    assert quarter[1, 4, 0] < 1e-6


def test_batch_rotation_targets_are_deterministic_and_rotate():
    # The NumPy-batch map of the backends without tf.data (keras.ops).
    import numpy as np

    script = _load_script()
    images = np.zeros((2, 9, 9, 1), "float32")
    images[:, 1, 4, 0] = 1.0  # a dot above the centre
    images[1, 8, 8, 0] = 0.5  # a different image
    map_fn = script.make_batch_map_fn(4, 0)
    (_, first), (_, second) = map_fn(images, np.array([3, 5])), map_fn(
        images, np.array([3, 5]))
    np.testing.assert_array_equal(first["rotation"], second["rotation"])
    np.testing.assert_array_equal(first["label"], [3, 5])
    assert set(first["rotation"].tolist()) <= {0, 1, 2, 3}
    # A quarter turn moves the dot from above the centre to one side,
    # as `rotate` does on TensorFlow.
    transforms = script.rotation_transforms(np.array([np.pi / 2]), 9, 9)
    quarter = keras.ops.convert_to_numpy(keras.ops.image.affine_transform(
        images[:1], transforms, interpolation="bilinear",
        fill_mode="constant", data_format="channels_last"))[0]
    assert quarter[4, 1, 0] > 0.99 or quarter[4, 7, 0] > 0.99
    assert quarter[1, 4, 0] < 1e-6
    # Over many images, every bin is drawn.
    many = np.random.default_rng(0).random((64, 9, 9, 1)).astype("float32")
    _, targets = map_fn(many, np.zeros(64, "int32"))
    assert set(targets["rotation"].tolist()) == {0, 1, 2, 3}
