"""Moved to `keras_dynfilt.pruning.rules.base`; kept as an import path."""

from keras_dynfilt.pruning.rules import base as _base


def __getattr__(name):
    # Every name of the old module (`ChannelRule`, `register_channel_rule`,
    # `get_layer_cost`, ...) lives on in `rules.base`.
    return getattr(_base, name)
