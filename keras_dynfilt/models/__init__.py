"""Reference networks from the papers, as functional-model builders."""

from keras_dynfilt.models.filter_generation import (
    filter_generation_network,
    sample_specificity,
    swapped_filter_model,
)
from keras_dynfilt.models.light_cnn import light_cnn

__all__ = [
    "filter_generation_network",
    "light_cnn",
    "sample_specificity",
    "swapped_filter_model",
]
