"""examples/tuning/tune.py: a smoke run, and a distributed search.

The distributed test runs KerasTuner's own distributed tuning unchanged: one
chief (the oracle, served over gRPC on 127.0.0.1) and two worker processes
running the example, each bounded by a timeout.
"""

import collections
import glob
import json
import os
import socket
import subprocess
import sys

import pytest

from tests.scripts import ROOT, load_script

# End-to-end example runs: outside `make test-fast`.
pytestmark = pytest.mark.slow

TINY = [
    "--dataset", "digits", "--limit-train", "300", "--epochs", "1",
    "--batch-size", "64", "--seed", "0", "--verbose", "0",
]


def test_tune_example_on_digits_with_two_trials(tmp_path):
    script = load_script("examples/tuning/tune.py")
    out = tmp_path / "sfp"
    results = script.main(
        TINY + ["--model", "sfp", "--depth", "8", "--max-trials", "2",
                "--output-dir", str(out)]
    )
    block = results["tuning"]
    assert block["num_trials"] == block["num_completed"] == 2
    assert block["split"] == {"train": 240, "validation": 60, "test": 360}
    assert set(block["best_hyperparameters"]) == {
        "pruning_rate", "criterion", "frequency"}
    assert block["paper_defaults"]["pruning_rate"] == 0.3
    assert 0.0 <= results["test"]["accuracy"] <= 1.0
    assert 0 < results["pruning"]["macs"] < results["pruning"]["full_macs"]
    on_disk = json.loads((out / "results.json").read_text())
    assert on_disk["tuning"]["best_trial_id"] == block["best_trial_id"]
    for name in ("tuning.json", "tuning.md", "tuning.png"):
        assert (out / name).stat().st_size > 0
    runs = glob.glob(str(out / "search" / "*" / "keras_dynfilt_runs_*"))
    lines = [line for path in runs for line in open(path) if line.strip()]
    assert len(lines) == 2


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# KerasTuner's gRPC oracle is backend-independent; three more processes per
# backend would only repeat it, so it runs on the primary backend.
@pytest.mark.tensorflow
def test_distributed_search_one_chief_two_workers(tmp_path):
    out = tmp_path / "distributed"
    port = str(_free_port())
    command = [
        sys.executable, str(ROOT / "examples" / "tuning" / "tune.py"),
        *TINY, "--model", "wsoftmax", "--max-trials", "3",
        "--output-dir", str(out),
    ]
    base_env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "KERAS_BACKEND": "tensorflow",
        "KERASTUNER_ORACLE_IP": "127.0.0.1",
        "KERASTUNER_ORACLE_PORT": port,
        "CUDA_VISIBLE_DEVICES": "",
    }
    processes = {}
    logs = {}
    try:
        for tuner_id in ("chief", "tuner0", "tuner1"):
            logs[tuner_id] = open(tmp_path / f"{tuner_id}.log", "w")
            processes[tuner_id] = subprocess.Popen(
                command,
                env={**base_env, "KERASTUNER_TUNER_ID": tuner_id},
                stdout=logs[tuner_id],
                stderr=subprocess.STDOUT,
                cwd=str(tmp_path),
            )
        codes = {
            tuner_id: process.wait(timeout=600)
            for tuner_id, process in processes.items()
        }
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.kill()
                process.wait()
        for log in logs.values():
            log.close()
    output = {
        t: (tmp_path / f"{t}.log").read_text()[-3000:] for t in processes
    }
    assert codes == {"chief": 0, "tuner0": 0, "tuner1": 0}, output

    # Every trial ran exactly once, on a worker.
    runs = collections.Counter()
    tuners = set()
    for path in glob.glob(str(out / "search" / "*" / "keras_dynfilt_runs_*")):
        for line in open(path):
            record = json.loads(line)
            runs[record["trial_id"]] += 1
            tuners.add(record["tuner_id"])
            assert record["status"] == "COMPLETED", record
    assert sorted(runs) == ["0", "1", "2"], runs
    assert set(runs.values()) == {1}, runs
    assert tuners <= {"tuner0", "tuner1"}

    # The chief holds every result: its report and results.json.
    report = json.loads((out / "tuning.json").read_text())
    assert report["num_trials"] == report["num_completed"] == 3
    assert {t["trial_id"] for t in report["trials"]} == set(runs)
    assert all(t["runs"] == 1 for t in report["trials"])
    results = json.loads((out / "results.json").read_text())
    assert results["tuning"]["distributed"] is True
    assert results["tuning"]["num_completed"] == 3
    assert "worker tuner0: done" in output["tuner0"]
