import json
import os

import pytest

from keras_dynfilt.training import DEBIAN_FASHION_MNIST
from tests import scripts

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not os.path.isdir(DEBIAN_FASHION_MNIST),
        reason="needs Fashion-MNIST in " + str(DEBIAN_FASHION_MNIST),
    ),
]


def _train_module():
    return scripts.load_script("examples/filter_generation/train.py")


@pytest.mark.parametrize("model", ["generated", "baseline"])
def test_smoke_run_writes_results(model, tmp_path):
    results = _train_module().main([
        "--model", model, "--encoder-filters", "4", "--repository-size", "2",
        "--epochs", "1", "--steps-per-epoch", "2", "--limit-train", "256",
        "--batch-size", "64", "--specificity-samples", "64",
        "--output-dir", str(tmp_path), "--verbose", "0",
    ])
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["model"] == model
    assert 0.0 <= saved["accuracy_epoch_1"] <= 1.0
    assert saved["accuracy_final"] == results["accuracy_final"]
    if model == "generated":
        check = saved["sample_specificity"]
        assert set(check) >= {"accuracy", "swapped_accuracy"}
    else:
        assert "sample_specificity" not in saved
