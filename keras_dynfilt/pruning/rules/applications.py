"""Channel rules and costs of the layers keras.applications models define
for themselves: ConvNeXt's `LayerScale` and `StochasticDepth`,
InceptionResNetV2's `CustomScaleLayer`.

The classes are private to Keras (`keras.src.applications`); they are
found through `keras_dynfilt._keras_private`, and a Keras that moved them
leaves these layers barriers (with a warning) instead of breaking the
import.
"""

from keras_dynfilt import _keras_private
from keras_dynfilt.pruning.rules.base import (
    WeightAxis,
    _variables,
    register_channel_rule,
)
from keras_dynfilt.pruning.rules.keras_layers import (
    MergeRule,
    PassThrough,
    per_element_macs,
)


class ChannelScaleRule(PassThrough):
    """A layer multiplying channel `c` by its own weight (ConvNeXt's
    `LayerScale`): zero stays zero; the weight is sliced with the channel
    and the width argument (`width_key`) follows the kept channels."""

    def __init__(self, weight, width_key):
        self.weight = weight
        self.width_key = width_key

    def macs(self, layer, ins, outs):
        # One multiplication per element, as a normalisation layer's scale.
        return per_element_macs(layer, ins, outs)

    def _key(self, layer):
        variable = getattr(layer, self.weight)
        return next(k for k, v in _variables(layer).items() if v is variable)

    def weights(self, layer, in_slots, out_slots):
        return {self._key(layer): [WeightAxis(0, in_slots[0], False)]}

    def compact_config(self, layer, config, keep_in, keep_out):
        return {**config, self.width_key: int(keep_in[0].sum())}


class ScaledSumRule(MergeRule):
    """InceptionResNetV2's `CustomScaleLayer`: `x + scale * r`, a merge."""

    def propagate(self, ctx, layer, inputs, output_shapes):
        width = output_shapes[0][-1]
        if len(inputs) != 2 or any(t.shape[-1] != width for t in inputs):
            return ctx.barrier(
                layer, inputs, output_shapes, "inputs of other widths"
            )
        return super().propagate(ctx, layer, inputs, output_shapes)


def _register():
    layer_scale = _keras_private.application_layer("convnext", "LayerScale")
    if layer_scale is not None:
        register_channel_rule(
            layer_scale, ChannelScaleRule("gamma", "projection_dim")
        )
    depth = _keras_private.application_layer("convnext", "StochasticDepth")
    if depth is not None:
        # (x / keep_prob) * random per sample: zero stays zero.
        register_channel_rule(depth, PassThrough())
    custom_scale = _keras_private.application_layer(
        "inception_resnet_v2", "CustomScaleLayer"
    )
    if custom_scale is not None:
        register_channel_rule(custom_scale, ScaledSumRule())


_register()
