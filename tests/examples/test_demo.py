"""Smoke test of examples/demo/prune_lightcnn.py (`make demo`), tiny data."""

import json

import keras
import pytest

pytestmark = [pytest.mark.tensorflow, pytest.mark.slow]
pytest.importorskip("tensorflow")

from tests.scripts import load_script  # noqa: E402


def test_demo_smoke(tmp_path):
    script = load_script("examples/demo/prune_lightcnn.py")
    results = script.main(
        [
            "--dataset", "digits",
            "--epochs", "2",
            "--steps-per-epoch", "3",
            "--batch-size", "32",
            "--pruning-rate", "0.5",
            "--timing-repeats", "2",
            "--output-dir", str(tmp_path),
            "--verbose", "0",
        ]
    )
    full, small = results["full"], results["compacted"]
    # The compacted model computes the masked model's function.
    assert small["test"]["accuracy"] == pytest.approx(
        full["test"]["accuracy"], abs=1e-6
    )
    assert small["cost"]["macs"] < 0.6 * full["cost"]["macs"]
    assert small["cost"]["params"] < full["cost"]["params"]
    assert set(results["latency_seconds"]) == {"1", "64"}
    for name in ("results.json", "demo.png", "compact.keras"):
        assert (tmp_path / name).exists(), name
    on_disk = json.loads((tmp_path / "results.json").read_text())
    assert on_disk["compacted"]["cost"] == small["cost"]
    loaded = keras.saving.load_model(tmp_path / "compact.keras", safe_mode=True)
    assert loaded.count_params() == small["cost"]["params"]
