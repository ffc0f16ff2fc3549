"""Smoke test of examples/pruning/train_sfp.py (tiny data, two steps)."""

import json

import pytest

from tests.scripts import load_script

# End-to-end example runs: outside `make test-fast`.
pytestmark = pytest.mark.slow


def test_train_sfp_smoke(tmp_path):
    script = load_script("examples/pruning/train_sfp.py")
    out = tmp_path / "fpgm"
    results = script.main(
        [
            "--dataset",
            "digits",
            "--method",
            "fpgm",
            "--depth",
            "8",
            "--epochs",
            "2",
            "--steps-per-epoch",
            "2",
            "--batch-size",
            "32",
            "--timing-repeats",
            "2",
            "--output-dir",
            str(out),
            "--verbose",
            "0",
        ]
    )
    pruning = results["pruning"]
    assert pruning["masked_accuracy"] == pruning["compacted_accuracy"]
    assert pruning["max_abs_logit_difference"] <= 1e-4 * max(
        1.0, pruning["max_abs_logit"]
    )
    assert 0.3 < pruning["flops_reduction"] < 0.6
    assert results["history"]["sparsity"] == pytest.approx(
        [results["history"]["sparsity"][0]] * 2
    )
    assert (out / "sfp_curves.png").exists()
    on_disk = json.loads((out / "results.json").read_text())
    assert on_disk["pruning"]["compacted_params"] < on_disk["pruning"]["params"]
    script.main(["--compare", str(tmp_path)])
    assert (tmp_path / "sfp_comparison.png").exists()
