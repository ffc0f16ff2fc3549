"""Moved to `keras_dynfilt.pruning.rules.base`; kept as an import path."""

from keras_dynfilt.pruning.rules.base import (  # noqa: F401
    ChannelRule,
    Registration,
    TensorSlots,
    WeightAxis,
    _variables,
    get_channel_rule,
    get_layer_cost,
    register_channel_rule,
    register_layer_cost,
)
