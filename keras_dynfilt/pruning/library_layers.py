"""Moved to `keras_dynfilt.pruning.rules.library_layers`; kept as an import
path."""

from keras_dynfilt.pruning.rules.library_layers import (  # noqa: F401
    ChannelPaddingRule,
    CrossStitchRule,
    DimensionReductionRule,
    FilterGeneratorRule,
    MFMRule,
    NDDRRule,
    WSoftmaxHeadRule,
    cross_stitch_macs,
    dimension_reduction_macs,
    filter_generator_macs,
    nddr_macs,
    wsoftmax_head_macs,
)
