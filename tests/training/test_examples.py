import json
import os
import pathlib
import socket
import subprocess
import sys

import keras
import numpy as np
import pytest

from tests.scripts import load_script

# End-to-end example runs: outside `make test-fast`.
pytestmark = pytest.mark.slow

ROOT = pathlib.Path(__file__).resolve().parents[2]


def _check_throughput(results):
    # 2 steps of 32 examples in the one timed epoch, inside the wall time.
    (seconds,) = results["epoch_seconds"]
    assert 0 < seconds < results["wall_seconds"]
    assert results["train_examples_per_second"] == pytest.approx(64 / seconds)


@pytest.mark.parametrize("jit", ["false", "true"])
def test_demo_smoke_on_this_backend(tmp_path, jit):
    # No TensorFlow needed: NumPy data and the backend's own jit.
    demo = load_script("examples/lightcnn/train.py")
    out = tmp_path / "run"
    results = demo.main([
        "--dataset", "digits", "--epochs", "1", "--steps-per-epoch", "2",
        "--batch-size", "32", "--width-multiplier", "0.125",
        "--jit-compile", jit, "--output-dir", str(out), "--verbose", "0",
    ])
    assert results["backend"] == keras.backend.backend()
    assert results["jit_compile"]["resolved"] is (jit == "true")
    on_disk = json.loads((out / "results.json").read_text())
    assert on_disk["test"]["accuracy"] == results["test"]["accuracy"]
    assert on_disk["dataset"]["num_test"] == 360
    assert len(on_disk["history"]["loss"]) == 1
    assert on_disk["versions"]["keras"] == keras.__version__
    _check_throughput(on_disk)


@pytest.mark.tensorflow
@pytest.mark.parametrize("strategy", ["default", "mirrored"])
@pytest.mark.parametrize("jit", ["false", "true"])
def test_demo_smoke_every_strategy_and_jit(tmp_path, strategy, jit):
    demo = load_script("examples/lightcnn/train.py")
    out = tmp_path / "run"
    results = demo.main(
        [
            "--dataset",
            "digits",
            "--epochs",
            "1",
            "--steps-per-epoch",
            "2",
            "--batch-size",
            "32",
            "--strategy",
            strategy,
            "--jit-compile",
            jit,
            "--output-dir",
            str(out),
            "--verbose",
            "0",
        ]
    )
    replicas = 2 if strategy == "mirrored" else 1
    assert results["num_replicas"] == replicas
    per_replica = strategy == "mirrored" and jit == "true"
    assert results["jit_compile"]["per_replica_xla"] is per_replica
    assert results["jit_compile"]["resolved"] is (
        jit == "true" and not per_replica
    )
    on_disk = json.loads((out / "results.json").read_text())
    assert on_disk["test"]["accuracy"] == results["test"]["accuracy"]
    assert 0.0 <= on_disk["test"]["accuracy"] <= 1.0
    assert len(on_disk["history"]["loss"]) == 1
    assert on_disk["versions"]["keras_dynfilt"]
    _check_throughput(on_disk)
    assert (out / "learning_curves.png").stat().st_size > 1000


def test_demo_mixed_precision_deterministic(tmp_path):
    demo = load_script("examples/lightcnn/train.py")
    args = [
        "--dataset",
        "digits",
        "--epochs",
        "1",
        "--steps-per-epoch",
        "3",
        "--mixed-precision",
        "--deterministic",
        "--verbose",
        "0",
    ]
    first = demo.main(args + ["--output-dir", str(tmp_path / "a")])
    second = demo.main(args + ["--output-dir", str(tmp_path / "b")])
    assert first["dtype_policy"] == "mixed_float16"
    assert first["history"]["loss"] == second["history"]["loss"]


@pytest.mark.skipif(
    not os.path.isdir("/usr/share/datasets/fashion-mnist"),
    reason="Debian's dataset-fashion-mnist is not installed",
)
def test_demo_default_dataset_is_offline_fashion_mnist(tmp_path):
    demo = load_script("examples/lightcnn/train.py")
    results = demo.main(
        [
            "--epochs",
            "1",
            "--steps-per-epoch",
            "2",
            "--verbose",
            "0",
            "--output-dir",
            str(tmp_path),
        ]
    )
    assert results["dataset"]["name"] == "fashion_mnist"
    assert results["dataset"]["source"].startswith("local:")


def test_report_table(tmp_path):
    report = load_script("examples/report.py")
    for seed, acc in [(0, 0.5), (1, 0.7)]:
        run = tmp_path / f"s{seed}"
        run.mkdir()
        (run / "results.json").write_text(
            json.dumps(
                {
                    "arguments": {
                        "seed": seed,
                        "model": "a",
                        "output_dir": str(run),
                    },
                    "test": {"accuracy": acc},
                }
            )
        )
    runs = report.find_runs(tmp_path)
    table = report.markdown_table(runs, ["model"], ["test.accuracy"], 2)
    assert "| a | 0.60 ± 0.14 | 2 | 0,1 |" in table


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.tensorflow
def test_multi_worker_two_processes_agree(tmp_path):
    ports = [_free_port(), _free_port()]
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    procs = []
    for task in range(2):
        env = {
            **os.environ,
            "TF_CONFIG": json.dumps(
                {"cluster": cluster, "task": {"type": "worker", "index": task}}
            ),
            "KERAS_DYNFILT_TASK": str(task),
            "PYTHONPATH": str(ROOT),
            "CUDA_VISIBLE_DEVICES": "",
        }
        procs.append(
            subprocess.Popen(
                [
                    sys.executable,
                    str(ROOT / "tests/training/multi_worker_job.py"),
                    str(tmp_path),
                ],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
            )
        )
    logs = []
    for proc in procs:
        try:
            out, _ = proc.communicate(timeout=300)
        finally:
            proc.kill()
        logs.append(out.decode(errors="replace")[-3000:])
        assert proc.returncode == 0, logs[-1]
    first = np.load(tmp_path / "weights-0.npz")
    second = np.load(tmp_path / "weights-1.npz")
    assert int(first["replicas"]) == 2
    for key in first.files:
        np.testing.assert_allclose(first[key], second[key], rtol=1e-6)
    final = np.concatenate(
        [first[k].ravel() for k in first.files if k.startswith("arr_")]
    )
    assert np.abs(final - first["initial"]).max() > 1e-3  # it trained
    assert np.isfinite(first["loss"]).all()
