"""Callbacks of keras-dynfilt."""

from keras_dynfilt.callbacks.pruning_schedules import (
    ConstantSparsity,
    PolynomialDecay,
    PruningSchedule,
)
from keras_dynfilt.callbacks.soft_filter_pruning import SoftFilterPruning

__all__ = [
    "ConstantSparsity",
    "PolynomialDecay",
    "PruningSchedule",
    "SoftFilterPruning",
]
