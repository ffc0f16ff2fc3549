"""Channel rules and cost formulas of this library's layers: `MFM`,
`ChannelPadding`, `NDDR`, `CrossStitch`, `FilterGenerator`,
`DimensionReduction` and `WSoftmaxHead`.

They use only the public contract (`ChannelRule`, `RuleContext`,
`register_channel_rule`); `keras_dynfilt.pruning` imports this module, so
the rules are active as soon as the package is (and `keras_dynfilt.layers`
never imports the pruning package).

- `MFM`: output channel `k` couples input channels `k` and `k + N/2`.
- `ChannelPadding`: the padded channels are constant zeros.

- `NDDR`: output `k` is a 1x1 convolution over the concatenated inputs plus
  batch normalization. Its `C_1 + ... + C_K` output channels are new
  filters (kernel column, BN gamma/beta); every task's input channels are
  consumed by the kernel rows at that task's offset, in every output's
  kernel. Output `k` always has the width of input `k` (the layer has no
  width argument), so output channel `c` of task `k` is coupled with input
  channel `c` of task `k`: both are removed together, which keeps the
  compacted layer's widths equal.
- `CrossStitch`: `y_k = sum_j a_kj x_j` channel by channel, so channel `c`
  of every task's input and output is one unit (the per-channel weights
  follow it).
- `FilterGenerator`: its `filters` output channels are filters (the
  coefficient-map columns `i * M .. i * M + M - 1`, their coefficient
  biases and the output bias); the input channels of `x` are consumed by
  the repository's base filters; `z` is no channel path of the output: its
  features are consumed by the coefficient map's rows.
- `DimensionReduction`: a consumer. Its first convolution's input rows
  follow the feature map's channels; its inner widths are pinned (a
  `filters=None` layer gets the original channel count written into its
  config), and its output vector is fixed.
- `WSoftmaxHead`: a consumer whose outputs (classes) are never pruned. The
  head divides each class column by its norm, so masking also zeroes the
  kernel rows of removed features: the masked model's norms then equal the
  compacted model's.
"""

import math

import keras
import numpy as np

from keras_dynfilt.layers.channel_padding import ChannelPadding
from keras_dynfilt.layers.cross_stitch import CrossStitch
from keras_dynfilt.layers.dimension_reduction import DimensionReduction
from keras_dynfilt.layers.filter_generator import FilterGenerator
from keras_dynfilt.layers.mfm import MFM
from keras_dynfilt.layers.nddr import NDDR
from keras_dynfilt.layers.wsoftmax_head import WSoftmaxHead
from keras_dynfilt.pruning.rules.base import (
    ChannelRule,
    WeightAxis,
    _variables,
    register_channel_rule,
)
from keras_dynfilt.pruning.rules.keras_layers import (
    _last_axis,
    activation_behaviour,
)


def _prod(dims):
    return math.prod(int(d) for d in dims)


def _fix_for_activation(ctx, activation, slots):
    behaviour = activation_behaviour(activation)
    if behaviour == "coupling":
        ctx.fix(slots, "the activation mixes channels")
    elif behaviour == "nonzero":
        ctx.fix(slots, "activation(0) != 0, a removed channel is not zero")


def _fixed_outputs(ctx, output_shapes, reason):
    outs = []
    for shape in output_shapes:
        if len(shape) < 2 or shape[-1] is None:
            outs.append(None)
            continue
        slots = ctx.new_zeros(shape[-1])
        ctx.fix(slots, reason)
        outs.append(slots)
    return outs


class MFMRule(ChannelRule):
    """MFM: output channel `k` couples input channels `k` and `k + N/2`."""

    elementwise = True

    pointwise = True

    def macs(self, layer, ins, outs):
        return 0  # comparisons only

    def propagate(self, ctx, layer, inputs, output_shapes):
        slots = inputs[0].slots
        if not _last_axis(layer.axis, len(inputs[0].shape)):
            return ctx.barrier(
                layer, inputs, output_shapes, "MFM over a non-last axis"
            )
        half = len(slots) // 2
        ctx.couple(slots[half:], slots[:half])
        nonzero = ctx.stays_nonzero(slots[:half]) | ctx.stays_nonzero(
            slots[half:]
        )
        return [ctx.with_nonzero(slots[:half], nonzero)]


class ChannelPaddingRule(ChannelRule):
    """ChannelPadding: the padded channels are constant zeros."""

    elementwise = True

    def macs(self, layer, ins, outs):
        return 0

    def propagate(self, ctx, layer, inputs, output_shapes):
        before, after = layer.padding
        return [
            np.concatenate(
                [ctx.new_zeros(before), inputs[0].slots, ctx.new_zeros(after)]
            )
        ]

    def compact_config(self, layer, config, keep_in, keep_out):
        before, after = layer.padding
        keep = keep_out[0]
        return {
            **config,
            "padding": (
                int(keep[:before].sum()),
                int(keep[len(keep) - after :].sum()),
            ),
        }


class NDDRRule(ChannelRule):
    """NDDR: per-task 1x1 convolutions over the concatenated inputs + BN."""

    def macs(self, layer, ins, outs):
        return nddr_macs(layer, ins, outs)

    def propagate(self, ctx, layer, inputs, output_shapes):
        widths = [len(t.slots) for t in inputs]
        # One filter index per output channel over all tasks (task offsets).
        filters = ctx.new_filters(layer, sum(widths))
        outs = np.split(filters, np.cumsum(widths)[:-1])
        for t, out in zip(inputs, outs):
            ctx.couple(out, t.slots)  # output k keeps input k's width
        _fix_for_activation(ctx, layer.activation, filters)
        return outs

    def weights(self, layer, in_slots, out_slots):
        rows = np.concatenate(in_slots)
        found = {
            f"kernel_{k}": [
                WeightAxis(0, rows, False),
                WeightAxis(1, out, True),
            ]
            for k, out in enumerate(out_slots)
        }
        if layer.use_batch_norm:
            columns = np.concatenate(out_slots)
            found.update(
                gamma=[WeightAxis(0, columns, True)],
                beta=[WeightAxis(0, columns, True)],
                moving_mean=[WeightAxis(0, columns, False)],
                moving_variance=[WeightAxis(0, columns, False)],
            )
        return found

    def filter_kernel(self, layer):
        return ("kernel_0", 1)

    def filter_matrix(self, layer):
        # Filter i (over all tasks) is column i of the concatenated kernels.
        kernels = [keras.ops.convert_to_numpy(k.value) for k in layer.kernels]
        return np.concatenate(kernels, axis=1).T

    def filter_kernel_positions(self, layer):
        offsets = np.cumsum([0] + [k.shape[1] for k in layer.kernels])
        return [
            (f"kernel_{k}", 1, np.arange(offsets[k], offsets[k + 1]))
            for k in range(len(layer.kernels))
        ]


class CrossStitchRule(ChannelRule):
    """CrossStitch: channel `c` of every task is one unit."""

    def macs(self, layer, ins, outs):
        return cross_stitch_macs(layer, ins, outs)

    def propagate(self, ctx, layer, inputs, output_shapes):
        first = inputs[0].slots
        for t in inputs[1:]:
            ctx.couple(t.slots, first)
        return [first for _ in output_shapes]

    def weights(self, layer, in_slots, out_slots):
        if layer.per_channel:
            return {"kernel": [WeightAxis(0, in_slots[0], False)]}
        return {}


class _FirstInputRule(ChannelRule):
    """A layer whose first input's channels must be known, while its other
    inputs may have none (FilterGenerator's `z`, WSoftmaxHead's labels)."""

    needs_input_slots = False
    unknown = "the channels of its first input are unknown"

    def propagate(self, ctx, layer, inputs, output_shapes):
        if inputs[0].slots is None:
            return ctx.barrier(layer, inputs, output_shapes, self.unknown)
        return self.propagate_known(ctx, layer, inputs, output_shapes)


class FilterGeneratorRule(_FirstInputRule):
    """FilterGenerator: output filters from coefficient columns + bias."""

    unknown = "the channels of x are unknown"

    def macs(self, layer, ins, outs):
        return filter_generator_macs(layer, ins, outs)

    def propagate_known(self, ctx, layer, inputs, output_shapes):
        out = ctx.new_filters(layer, layer.filters)
        _fix_for_activation(ctx, layer.activation, out)
        return [out]

    def weights(self, layer, in_slots, out_slots):
        out = out_slots[0]
        columns = np.repeat(out, layer.repository_size)
        coefficient = [WeightAxis(1, columns, True)]
        if in_slots[1] is not None:
            coefficient.append(WeightAxis(0, in_slots[1], False))
        found = {
            "repository": [WeightAxis(2, in_slots[0], False)],
            "coefficient_kernel": coefficient,
        }
        if layer.use_coefficient_bias:
            found["coefficient_bias"] = [WeightAxis(0, columns, True)]
        if layer.use_bias:
            found["bias"] = [WeightAxis(0, out, True)]
        return found

    def compact_config(self, layer, config, keep_in, keep_out):
        return {**config, "filters": int(keep_out[0].sum())}

    def filter_kernel(self, layer):
        return ("coefficient_kernel", 1)

    def filter_matrix(self, layer):
        # Columns i * M + j: filter i's M coefficient maps over z.
        value = keras.ops.convert_to_numpy(layer.coefficient_kernel.value)
        value = value.reshape(value.shape[0], layer.filters, -1)
        return np.transpose(value, (1, 0, 2)).reshape(layer.filters, -1)

    def filter_kernel_positions(self, layer):
        filters = np.repeat(np.arange(layer.filters), layer.repository_size)
        return [("coefficient_kernel", 1, filters)]


def _first_conv_key(layer):
    kernel = layer.blocks[0].kernel
    return next(k for k, v in _variables(layer).items() if v is kernel)


class DimensionReductionRule(ChannelRule):
    """DimensionReduction: input channels consumed, output fixed."""

    def macs(self, layer, ins, outs):
        return dimension_reduction_macs(layer, ins, outs)

    def propagate(self, ctx, layer, inputs, output_shapes):
        return _fixed_outputs(
            ctx, output_shapes, "DimensionReduction output (not pruned)"
        )

    def weights(self, layer, in_slots, out_slots):
        return {_first_conv_key(layer): [WeightAxis(2, in_slots[0], False)]}

    def compact_config(self, layer, config, keep_in, keep_out):
        if config.get("filters") is None:
            # The inner width followed the input; pin it to the original.
            config = {**config, "filters": int(len(keep_in[0]))}
        return config


class WSoftmaxHeadRule(_FirstInputRule):
    """WSoftmaxHead: feature rows sliced (and zeroed), classes fixed."""

    unknown = "the features are unknown"

    def macs(self, layer, ins, outs):
        return wsoftmax_head_macs(layer, ins, outs)

    def propagate_known(self, ctx, layer, inputs, output_shapes):
        return _fixed_outputs(ctx, output_shapes, "classes are never pruned")

    def weights(self, layer, in_slots, out_slots):
        # zero=True: the column norms must not count the removed rows.
        return {"kernel": [WeightAxis(0, in_slots[0], True)]}


# -- cost formulas (multiply-adds for one sample), the rules' `macs` -------
def filter_generator_macs(layer, ins, outs):
    """Static conv with the M base filters, the per-sample mix of the M maps
    into N outputs, and the coefficient map `z -> (N, M)`."""
    x, z = ins[0], ins[1]
    m, n = layer.repository_size, outs[0][-1]
    pixels = _prod(outs[0][1:-1])
    static = pixels * _prod(layer.kernel_size) * x[-1] * m
    return static + pixels * n * m + z[-1] * n * m


def nddr_macs(layer, ins, outs):
    """1x1 convolution over the concatenated channels, plus BN."""
    pixels = _prod(outs[0][1:-1])
    c_in = sum(s[-1] for s in ins)
    c_out = sum(s[-1] for s in outs)
    bn = pixels * c_out if layer.use_batch_norm else 0
    return pixels * c_in * c_out + bn


def cross_stitch_macs(layer, ins, outs):
    """Each of the K outputs sums K scaled inputs: K^2 per element."""
    return len(ins) * len(outs) * _prod(outs[0][1:])


def wsoftmax_head_macs(layer, ins, outs):
    """As a Dense layer: `dim x num_classes` (inference logits)."""
    return ins[0][-1] * outs[0][-1]


def dimension_reduction_macs(layer, ins, outs):
    """The sum of its convolutions, batch normalizations and dense layer."""
    shape = tuple(ins[0])
    total = 0
    for sub in layer.blocks:
        out = tuple(sub.compute_output_shape(shape))
        if hasattr(sub, "kernel_size"):
            total += _prod(out[1:]) * _prod(sub.kernel_size) * shape[-1]
        elif hasattr(sub, "moving_mean"):
            total += _prod(out[1:])
        shape = out
    return total + shape[-1] * outs[0][-1]


def _register():
    register_channel_rule(MFM, MFMRule())
    register_channel_rule(ChannelPadding, ChannelPaddingRule())
    register_channel_rule(NDDR, NDDRRule())
    register_channel_rule(CrossStitch, CrossStitchRule())
    register_channel_rule(FilterGenerator, FilterGeneratorRule())
    register_channel_rule(DimensionReduction, DimensionReductionRule())
    register_channel_rule(WSoftmaxHead, WSoftmaxHeadRule())


_register()
