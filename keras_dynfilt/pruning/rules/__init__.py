"""The channel rules: how each layer type treats channels, and its cost.

- `base`: the rule contract (`ChannelRule`, `WeightAxis`, `TensorSlots`)
  and the registry (`register_channel_rule`, `register_layer_cost`,
  `get_channel_rule`, `get_layer_cost`).
- `context`: `RuleContext`, everything a rule may call.
- `keras_layers`: the Keras layers (`keras.layers`).
- `keras_ops`: Keras ops applied to tensors (`x + y`, `keras.ops.pad`):
  the operation nodes of a functional model.
- `applications`: the layers keras.applications models define for
  themselves (ConvNeXt, InceptionResNetV2).
- `library_layers`: this library's layers (MFM, ChannelPadding, NDDR,
  CrossStitch, FilterGenerator, DimensionReduction, WSoftmaxHead).
- `transformers`: MultiHeadAttention (heads, head dimensions), EinsumDense,
  LayerNormalization / RMSNormalization (exact, or the inexact mode), and
  this library's ClassToken and PositionEmbedding.
- `keras_hub`: keras-hub's Gemma and Llama decoder blocks (MLP widths,
  Gemma's key/value heads), registered by class path (keras-hub is never
  imported).

Importing the package registers every rule (once each).
"""

from keras_dynfilt.pruning.rules import (  # noqa: F401 - registers rules
    applications,
    keras_hub,
    keras_ops,
    library_layers,
    transformers,
)
from keras_dynfilt.pruning.rules.applications import (  # noqa: F401
    ChannelScaleRule,
    ScaledSumRule,
)
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
from keras_dynfilt.pruning.rules.context import RuleContext  # noqa: F401
from keras_dynfilt.pruning.rules.keras_layers import (  # noqa: F401
    ActivationRule,
    BatchNormalizationRule,
    ConcatenateRule,
    DepthwiseRule,
    EmbeddingRule,
    FlattenRule,
    InputLayerRule,
    MaxPoolingRule,
    MergeRule,
    NormalizationOverChannelsRule,
    PassThrough,
    PReLURule,
    ProducerRule,
    RescalingRule,
    ReshapeRule,
    SeparableRule,
    SoftmaxRule,
    UnitNormalizationRule,
    _channels_last,
    _check_activation,
    _last_axis,
    _per_channel,
    _spatial_size,
    activation_behaviour,
    merge_slots,
)
from keras_dynfilt.pruning.rules.library_layers import (  # noqa: F401
    ChannelPaddingRule,
    MFMRule,
)
