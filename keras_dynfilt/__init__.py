"""keras-dynfilt: dynamic filters, multi-task fusion and structured pruning
for Keras 3."""

__version__ = "0.1.0.dev0"

<<<<<<< HEAD
from keras_dynfilt import callbacks, layers, models, pruning  # noqa: E402
from keras_dynfilt.layers import MFM, ChannelPadding  # noqa: E402

__all__ = ["ChannelPadding", "MFM", "__version__", "callbacks", "layers",
           "models", "pruning"]
=======
from keras_dynfilt import layers, models  # noqa: E402
from keras_dynfilt.layers import MFM, WSoftmaxHead  # noqa: E402

__all__ = ["MFM", "WSoftmaxHead", "__version__", "layers", "models"]
>>>>>>> main
