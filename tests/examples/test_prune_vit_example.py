"""Smoke test of examples/transformer/prune_vit.py on tiny data."""

import json

import keras
import pytest

pytestmark = [pytest.mark.tensorflow, pytest.mark.slow]
pytest.importorskip("tensorflow")

from tests.scripts import load_script  # noqa: E402


def test_prune_vit_smoke(tmp_path):
    script = load_script("examples/transformer/prune_vit.py")
    common = [
        "--dataset", "digits", "--seed", "0", "--patch-size", "4",
        "--dim", "8", "--depth", "1", "--num-heads", "2", "--mlp-dim", "8",
        "--steps-per-epoch", "2", "--batch-size", "32", "--verbose", "0",
        "--run-dir", str(tmp_path / "runs"),
        "--results-dir", str(tmp_path / "results"),
    ]
    script.main(["--stage", "base", "--epochs", "1"] + common)
    script.main(
        ["--stage", "prune", "--finetune-epochs", "1", "--rates", "0.5",
         "--timing-repeats", "2"] + common
    )
    result = json.loads((tmp_path / "results" / "seed_0.json").read_text())
    assert result["complete"]
    exact, inexact = result["variants"]
    # Exact: the compacted model computes the masked model's function.
    assert exact["accuracy_pruned"] == pytest.approx(
        exact["accuracy_masked"], abs=1e-6
    )
    assert exact["compaction_difference"]["normalizations"] == []
    assert inexact["compaction_difference"]["normalizations"]
    kinds = {g["kind"] for g in inexact["pruned_groups"].values()}
    assert kinds == {"heads", "mlp", "residual"}
    base = result["base"]
    assert exact["macs"] < base["macs"] and inexact["macs"] < exact["macs"]
    small = keras.saving.load_model(
        tmp_path / "runs" / "seed_0" / "inexact_50_finetuned.keras",
        safe_mode=True,
    )
    assert small.get_layer("block1_attention").num_heads == 1
