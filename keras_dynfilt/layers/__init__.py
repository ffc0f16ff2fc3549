"""Keras layers of keras-dynfilt."""

from keras_dynfilt.layers.channel_padding import ChannelPadding
from keras_dynfilt.layers.cross_stitch import CrossStitch
from keras_dynfilt.layers.dimension_reduction import DimensionReduction
from keras_dynfilt.layers.filter_generator import FilterGenerator
from keras_dynfilt.layers.mfm import MFM
from keras_dynfilt.layers.nddr import NDDR
from keras_dynfilt.layers.wsoftmax_head import WSoftmaxHead

__all__ = [
    "ChannelPadding",
    "CrossStitch",
    "DimensionReduction",
    "FilterGenerator",
    "MFM",
    "NDDR",
    "WSoftmaxHead",
]
