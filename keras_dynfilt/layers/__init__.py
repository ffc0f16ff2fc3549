"""Keras layers of keras-dynfilt."""

from keras_dynfilt.layers.dimension_reduction import DimensionReduction
from keras_dynfilt.layers.filter_generator import FilterGenerator
from keras_dynfilt.layers.mfm import MFM

__all__ = ["DimensionReduction", "FilterGenerator", "MFM"]
