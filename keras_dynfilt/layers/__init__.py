"""Keras layers of keras-dynfilt."""

from keras_dynfilt.layers.channel_padding import ChannelPadding
from keras_dynfilt.layers.mfm import MFM
from keras_dynfilt.layers.wsoftmax_head import WSoftmaxHead

<<<<<<< HEAD
__all__ = ["ChannelPadding", "MFM"]
=======
__all__ = ["MFM", "WSoftmaxHead"]
>>>>>>> main
