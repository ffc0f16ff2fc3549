"""What a run records: versions, devices, epoch times, JSON values."""

import importlib.metadata
import sys
import time

import keras
import numpy as np


def backend_versions():
    """Versions of the installed backends, without importing any."""
    versions = {}
    for package, dists in (
        ("tensorflow", ("tensorflow", "tensorflow-cpu")),
        ("jax", ("jax",)),
        ("torch", ("torch",)),
    ):
        module = sys.modules.get(package)
        versions[package] = getattr(module, "__version__", None)
        for dist in dists:
            if versions[package]:
                break
            try:
                versions[package] = importlib.metadata.version(dist)
            except importlib.metadata.PackageNotFoundError:
                pass
    return versions


def devices():
    """The backend's devices, by name."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        return [d.name for d in tf.config.list_logical_devices()]
    if backend == "jax":
        import jax

        return [str(d) for d in jax.devices()]
    if backend == "torch":
        import torch

        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        return ["cpu"] + [f"cuda:{i}" for i in range(count)]
    return []


class EpochTimer(keras.callbacks.Callback):
    """Wall time of each epoch's training part (without validation)."""

    def on_train_begin(self, logs=None):
        self.epoch_seconds = []

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_test_begin(self, logs=None):
        if hasattr(self, "_start"):
            self.epoch_seconds.append(time.perf_counter() - self._start)
            del self._start

    def on_epoch_end(self, epoch, logs=None):
        if hasattr(self, "_start"):
            self.epoch_seconds.append(time.perf_counter() - self._start)
            del self._start


def json_default(value):
    """`json.dump`'s fallback for NumPy values and other objects."""
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)
