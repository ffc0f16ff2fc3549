"""keras-dynfilt: dynamic filters, multi-task fusion and structured pruning
for Keras 3."""

__version__ = "0.1.0.dev0"

from keras_dynfilt._backend import require_backend  # noqa: E402

require_backend()

from keras_dynfilt import (  # noqa: E402
    callbacks,
    layers,
    models,
    optimizers,
    pruning,
)
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
    "callbacks",
    "layers",
    "models",
    "optimizers",
    "pruning",
]
