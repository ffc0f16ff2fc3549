"""`--strategy mirrored` on JAX: keras.distribution.DataParallel."""

import json
import os
import pathlib
import subprocess
import sys

import keras
import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]

pytestmark = [
    pytest.mark.skipif(
        keras.backend.backend() != "jax",
        reason="keras.distribution.DataParallel is JAX's",
    ),
    pytest.mark.slow,  # two training runs in subprocesses
]


def test_two_host_devices_give_the_one_device_loss_curve(tmp_path):
    env = {
        **os.environ,
        "KERAS_BACKEND": "jax",
        "XLA_FLAGS": "--xla_force_host_platform_device_count=2",
        "PYTHONPATH": str(ROOT),
        "JAX_PLATFORMS": "cpu",
    }
    result = tmp_path / "losses.json"
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "tests/training/data_parallel_job.py"),
            str(result),
            str(tmp_path / "run"),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    runs = json.loads(result.read_text())
    one, two = runs["default"], runs["mirrored"]
    assert one["num_replicas"] == 1 and one["strategy"] == "SingleDevice"
    assert two["num_replicas"] == 2 and two["strategy"] == "DataParallel"
    assert "NamedSharding" in two["kernel_sharding"]
    # The same global batches, split over two devices: the same curve.
    np.testing.assert_allclose(two["loss"], one["loss"], rtol=1e-4)
    np.testing.assert_allclose(two["val_loss"], one["val_loss"], rtol=1e-4)
    assert one["loss"][-1] < one["loss"][0]  # it trained
