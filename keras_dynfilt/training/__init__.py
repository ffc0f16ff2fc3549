"""Training support shared by the example scripts.

Import it explicitly (`from keras_dynfilt import training`). On the
TensorFlow backend it uses tf.data and tf.distribute; on JAX and PyTorch it
imports no TensorFlow (NumPy data, `keras.distribution` on JAX). The
per-replica XLA tools (`ReplicaJitModel`, ...) are TensorFlow's and are
imported on first use.

One concern per module: `datasets` (`load_image_data`, the front door),
`tf_data` / `tfds_builders` (the TensorFlow path), `numpy_data` /
`array_batches` (the NumPy path), `idx_files` (the MNIST file format),
`arguments` (the shared command line), `strategies` (distribution on each
backend), `experiment` (`ExperimentRun`), `run_record` and `plots` (what a
run writes), `replica_jit` (MirroredStrategy + XLA).
"""

from keras_dynfilt.training.arguments import example_argument_parser
from keras_dynfilt.training.array_batches import ArrayBatches
from keras_dynfilt.training.datasets import (
    DEBIAN_FASHION_MNIST,
    load_image_data,
    numpy_split,
)
from keras_dynfilt.training.experiment import ExperimentRun
from keras_dynfilt.training.image_data import ImageData
from keras_dynfilt.training.plots import plot_history
from keras_dynfilt.training.strategies import cpu_mirrored_strategy

_REPLICA_JIT = (
    "ReplicaJitMixin",
    "ReplicaJitModel",
    "compile_replica_jit",
    "replica_jit_gradients",
)


def __getattr__(name):
    # replica_jit imports TensorFlow: only when one of its names is used.
    if name in _REPLICA_JIT:
        from keras_dynfilt.training import replica_jit

        return getattr(replica_jit, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "DEBIAN_FASHION_MNIST",
    "ArrayBatches",
    "ExperimentRun",
    "ImageData",
    "ReplicaJitMixin",
    "ReplicaJitModel",
    "compile_replica_jit",
    "cpu_mirrored_strategy",
    "example_argument_parser",
    "load_image_data",
    "numpy_split",
    "plot_history",
    "replica_jit_gradients",
]
