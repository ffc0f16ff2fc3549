"""Keras layers of keras-dynfilt."""

from keras_dynfilt.layers.channel_padding import ChannelPadding
from keras_dynfilt.layers.mfm import MFM
from keras_dynfilt.layers.wsoftmax_head import WSoftmaxHead

__all__ = ["ChannelPadding", "MFM", "WSoftmaxHead"]
