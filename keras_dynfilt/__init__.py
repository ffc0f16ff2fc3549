"""keras-dynfilt: dynamic filters, multi-task fusion and structured pruning
for Keras 3."""

__version__ = "0.1.0.dev0"

from keras_dynfilt import callbacks, layers, models, pruning  # noqa: E402
from keras_dynfilt.layers import MFM, ChannelPadding, WSoftmaxHead  # noqa: E402

__all__ = ["ChannelPadding", "MFM", "WSoftmaxHead", "__version__",
           "callbacks", "layers", "models", "pruning"]
