"""Moved to `keras_dynfilt.pruning.rules.keras_ops`; kept as an import path."""

from keras_dynfilt.pruning.rules.keras_layers import MaxPoolingRule  # noqa: F401
from keras_dynfilt.pruning.rules.keras_ops import (  # noqa: F401
    ConcatenateOpRule,
    DivideOpRule,
    ElementwiseOpRule,
    PadOpRule,
    ReduceOpRule,
    ReshapeOpRule,
    SoftmaxOpRule,
    SplitOpRule,
)
