"""Reference networks from the papers, as functional-model builders."""

from keras_dynfilt.models.light_cnn import light_cnn
from keras_dynfilt.models.resnet_cifar import resnet_cifar

__all__ = ["light_cnn", "resnet_cifar"]
