"""Moved to `keras_dynfilt.pruning.rules.keras_ops`; kept as an import path."""

from keras_dynfilt.pruning.rules.keras_layers import (  # noqa: F401
    MaxPoolingRule,
)
from keras_dynfilt.pruning.rules.keras_layers import (  # noqa: F401
    ReshapeRule as ReshapeOpRule,  # one rule for the layer and the op
)
from keras_dynfilt.pruning.rules.keras_ops import (  # noqa: F401
    ConcatenateOpRule,
    DivideOpRule,
    ElementwiseOpRule,
    PadOpRule,
    ReduceOpRule,
    SoftmaxOpRule,
    SplitOpRule,
)
