import json

import pytest

from tests import scripts

# End-to-end example runs: outside `make test-fast`.
pytestmark = pytest.mark.slow


@pytest.mark.tensorflow
def test_examples_smoke_run_on_digits(tmp_path):
    """train_primary -> transfer -> prune on scikit-learn's digits (offline)."""
    primary = scripts.load_script("examples/cross_task/train_primary.py")
    primary.main([
        "--dataset", "digits", "--epochs", "1", "--steps-per-epoch", "2",
        "--batch-size", "64", "--output-dir", str(tmp_path / "primary"),
        "--verbose", "0"])
    model = str(tmp_path / "primary" / "primary.keras")
    common = ["--dataset", "digits", "--primary", model, "--tasks",
              "digits", "--partitions", "0", "--satellite-size", "300",
              "--verbose", "0"]
    transfer = scripts.load_script("examples/cross_task/transfer.py")
    out = transfer.main(common + [
        "--epochs", "1", "--steps-per-epoch", "2",
        "--output-dir", str(tmp_path / "transfer")])
    digits = out["tasks"]["digits"]
    run = digits["runs"][0]
    assert run["sizes"] == [180, 60, 60]
    reg, tl = run["regression"], run["transfer_learning"]
    # The probe's time covers its two timed parts (features, then fits);
    # both timed runs lie inside the script's wall time; the summary is
    # their ratio.
    assert 0 < reg["feature_seconds"] + reg["fit_seconds"] <= reg["seconds"]
    assert 0 < reg["seconds"] + tl["seconds"] < out["wall_seconds"]
    assert digits["regression_seconds"] == {
        "mean": reg["seconds"], "std": 0.0, "n": 1
    }
    assert digits["speedup"]["mean"] == pytest.approx(
        tl["seconds"] / reg["seconds"]
    )
    assert 0 <= digits["regression_accuracy"]["mean"] <= 1
    assert (tmp_path / "transfer" / "per_layer_accuracy.png").exists()
    prune = scripts.load_script("examples/cross_task/prune.py")
    prune.main(common + [
        "--n-lambdas", "12", "--finetune-epochs", "1",
        "--steps-per-epoch", "1", "--speed-repeats", "1",
        "--output-dir", str(tmp_path / "prune")])
    saved = json.loads((tmp_path / "prune" / "results.json").read_text())
    task = saved["tasks"]["digits"]
    record = task["runs"][0]["thresholds"]["0.01"]
    assert record["params_after"] < record["params_before"]
    assert record["keras_round_trip_max_diff"] < 1e-5
    assert 0 <= record["test_accuracy_finetuned"] <= 1
    assert task["inference_speed"]["batch_64"]["speedup"] > 0
    assert (tmp_path / "prune" / "curves_digits.png").exists()
