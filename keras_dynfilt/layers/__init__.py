"""Keras layers of keras-dynfilt."""

from keras_dynfilt.layers.mfm import MFM

__all__ = ["MFM"]
