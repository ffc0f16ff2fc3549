"""Keras layers of keras-dynfilt."""

from keras_dynfilt.layers.channel_padding import ChannelPadding
from keras_dynfilt.layers.class_token import ClassToken
from keras_dynfilt.layers.cross_stitch import CrossStitch
from keras_dynfilt.layers.dimension_reduction import DimensionReduction
from keras_dynfilt.layers.filter_generator import FilterGenerator
from keras_dynfilt.layers.mfm import MFM
from keras_dynfilt.layers.nddr import NDDR
from keras_dynfilt.layers.position_embedding import PositionEmbedding
from keras_dynfilt.layers.wsoftmax_head import WSoftmaxHead

__all__ = [
    "ChannelPadding",
    "ClassToken",
    "CrossStitch",
    "DimensionReduction",
    "FilterGenerator",
    "MFM",
    "NDDR",
    "PositionEmbedding",
    "WSoftmaxHead",
]
