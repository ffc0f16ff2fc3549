"""Optimizer wrappers of keras-dynfilt."""

from keras_dynfilt.optimizers.lr_multiplier import (
    LearningRateMultiplier,
    get_lr_multiplier,
    set_lr_multiplier,
)

__all__ = ["LearningRateMultiplier", "get_lr_multiplier", "set_lr_multiplier"]
