"""Reference networks from the papers, as functional-model builders."""

from keras_dynfilt.models.filter_generation import (
    filter_generation_network,
    sample_specificity,
    swapped_filter_model,
)
from keras_dynfilt.models.light_cnn import light_cnn
from keras_dynfilt.models.nddr_network import conv_stage, nddr_network
from keras_dynfilt.models.resnet_cifar import resnet_cifar
from keras_dynfilt.models.vit import vit

__all__ = [
    "conv_stage",
    "filter_generation_network",
    "light_cnn",
    "nddr_network",
    "resnet_cifar",
    "sample_specificity",
    "swapped_filter_model",
    "vit",
]
