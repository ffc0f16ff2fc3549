"""Keras layers of keras-dynfilt."""

from keras_dynfilt.layers.cross_stitch import CrossStitch
from keras_dynfilt.layers.mfm import MFM
from keras_dynfilt.layers.nddr import NDDR

__all__ = ["MFM", "CrossStitch", "NDDR"]
