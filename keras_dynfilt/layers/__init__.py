"""Keras layers of keras-dynfilt."""

from keras_dynfilt.layers.channel_padding import ChannelPadding
from keras_dynfilt.layers.mfm import MFM

__all__ = ["ChannelPadding", "MFM"]
