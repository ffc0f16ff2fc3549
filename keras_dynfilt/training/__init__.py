"""Training support shared by the example scripts.

TensorFlow-specific by design (tf.data pipelines, tf.distribute): import it
explicitly (`from keras_dynfilt import training`); `import keras_dynfilt`
does not, so the layers stay usable on the JAX backend without TensorFlow.
"""

from keras_dynfilt.training.datasets import (
    DEBIAN_FASHION_MNIST,
    ImageData,
    load_image_data,
    numpy_split,
)
from keras_dynfilt.training.experiment import (
    ExperimentRun,
    example_argument_parser,
    plot_history,
)
from keras_dynfilt.training.replica_jit import (
    ReplicaJitMixin,
    ReplicaJitModel,
    compile_replica_jit,
    replica_jit_gradients,
)

__all__ = [
    "DEBIAN_FASHION_MNIST",
    "ExperimentRun",
    "ImageData",
    "ReplicaJitMixin",
    "ReplicaJitModel",
    "compile_replica_jit",
    "example_argument_parser",
    "load_image_data",
    "numpy_split",
    "plot_history",
    "replica_jit_gradients",
]
