"""Reference networks from the papers, as functional-model builders."""

from keras_dynfilt.models.light_cnn import light_cnn

__all__ = ["light_cnn"]
