"""keras-dynfilt: dynamic filters, multi-task fusion and structured pruning
for Keras 3."""

__version__ = "0.1.0.dev0"

from keras_dynfilt import layers, models, optimizers, pruning  # noqa: E402
from keras_dynfilt.layers import (  # noqa: E402
    MFM,
    NDDR,
    ChannelPadding,
    CrossStitch,
    DimensionReduction,
    FilterGenerator,
    WSoftmaxHead,
)

__all__ = [
    "MFM",
    "NDDR",
    "ChannelPadding",
    "CrossStitch",
    "DimensionReduction",
    "FilterGenerator",
    "WSoftmaxHead",
    "__version__",
    "layers",
    "models",
    "optimizers",
    "pruning",
]
