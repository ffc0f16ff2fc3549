"""Channel rules (and costs) for the layers other libraries' models use.

- Recurrent layers (`SimpleRNN`, `LSTM`, `GRU`, `ConvLSTM1D/2D/3D`,
  `Bidirectional`) are consumers: their input features are kernel rows,
  sliced with the channels feeding them; the recurrent width itself is
  held fixed (their outputs are never pruned).
- `TimeDistributed(layer)`: the inner layer's rule (and cost) over the
  extra time axis.
- `Resizing` and `keras.ops.image.resize`: pass-through for channels
  (interpolation is per channel, a zero channel stays zero).
- `x[:, ::2, ::2, :]` (`GetItem` on other axes than channels):
  pass-through.
- `GroupNormalization`: its groups are units (removing a whole group, and
  the filters feeding it, leaves the other groups' statistics alone);
  `groups` shrinks with them.
"""

import math

import keras
import numpy as np
from keras.src.ops import core as ops_core
from keras.src.ops import image as ops_image
from keras.src.ops import numpy as ops_numpy

from keras_dynfilt.pruning import cost as _cost
from keras_dynfilt.pruning.op_rules import ElementwiseOpRule
from keras_dynfilt.pruning.registry import (
    ChannelRule,
    TensorSlots,
    WeightAxis,
    _variables,
    get_channel_rule,
    register_channel_rule,
)
from keras_dynfilt.pruning.rules import PassThrough, _channels_last

L = keras.layers


def _held(ctx, shape, reason):
    """Fixed slots for an output that is never pruned."""
    if len(shape) < 2 or shape[-1] is None:
        return None
    slots = ctx.new_zeros(shape[-1])
    ctx.fix(slots, reason)
    return slots


def _strip_build(serialized):
    """A nested layer config without its build shapes (they name the
    original input width)."""
    serialized = dict(serialized)
    serialized.pop("build_config", None)
    return serialized


class RecurrentRule(ChannelRule):
    """RNN layers as consumers of their input features.

    Every weight named `kernel` (the input kernel of each cell; both
    directions of a `Bidirectional`) has the input features on axis -2:
    `(features, gates * units)`, or `(..., features, gates * filters)` for
    `ConvLSTM`. The outputs (sequence and states) keep their width.
    """

    def propagate(self, ctx, layer, inputs, output_shapes):
        if not _channels_last(layer):
            return ctx.barrier(
                layer, inputs, output_shapes, "data_format='channels_first'"
            )
        for t in inputs[1:]:  # initial states, constants: not pruned
            ctx.fix(t.slots, f"a state of {type(layer).__name__}")
        return [
            _held(ctx, shape, "the recurrent width is held fixed")
            for shape in output_shapes
        ]

    def weights(self, layer, in_slots, out_slots):
        found = {}
        for key, variable in _variables(layer).items():
            if variable.name == "kernel":
                found[key] = [WeightAxis(-2, in_slots[0], False)]
        return found

    def compact_config(self, layer, config, keep_in, keep_out):
        config = dict(config)
        for key in ("layer", "backward_layer"):  # Bidirectional
            if isinstance(config.get(key), dict):
                config[key] = _strip_build(config[key])
        return config


def _rnn_cell_macs(layer, features, units):
    """Multiply-adds of one step of a recurrent layer."""
    gates = {"LSTM": 4, "GRU": 3, "SimpleRNN": 1}[type(layer).__name__]
    return gates * units * (features + units)


def _rnn_cost(layer, ins, outs):
    steps, features = ins[0][1], ins[0][-1]
    if isinstance(layer, L.Bidirectional):
        return sum(
            _rnn_cost(inner, ins, outs)
            for inner in (layer.forward_layer, layer.backward_layer)
        )
    if isinstance(layer, (L.LSTM, L.GRU, L.SimpleRNN)):
        return int(steps) * _rnn_cell_macs(layer, int(features), layer.units)
    # ConvLSTM: input and recurrent convolutions of the 4 gates per step,
    # over the output positions.
    filters = layer.filters
    spatial = outs[0][2:-1] if layer.return_sequences else outs[0][1:-1]
    window = math.prod(int(k) for k in layer.kernel_size)
    positions = math.prod(int(d) for d in spatial)
    return int(steps) * positions * window * 4 * filters * (
        int(features) + filters
    )


def _drop_time(shape):
    return (shape[0],) + tuple(shape[2:])


class TimeDistributedRule(ChannelRule):
    """`TimeDistributed(inner)`: the inner layer's rule on each step."""

    elementwise = True

    def _inner(self, layer):
        return get_channel_rule(layer.layer)

    def propagate(self, ctx, layer, inputs, output_shapes):
        inner = self._inner(layer)
        if inner is None:
            return ctx.barrier(
                layer, inputs, output_shapes,
                f"no channel rule registered for the wrapped "
                f"{type(layer.layer).__name__}",
            )
        if not inner.elementwise:
            for t in inputs:
                ctx.require_zero(t.slots)
        inner_inputs = [
            TensorSlots(_drop_time(t.shape), t.slots) for t in inputs
        ]
        return inner.propagate(
            ctx, layer.layer, inner_inputs,
            [_drop_time(s) for s in output_shapes],
        )

    def _rekey(self, layer, found):
        """Inner weight keys -> the wrapper's keys (same variables)."""
        inner_vars = _variables(layer.layer)
        outer = {id(v): k for k, v in _variables(layer).items()}
        return {outer[id(inner_vars[k])]: axes for k, axes in found.items()}

    def weights(self, layer, in_slots, out_slots):
        found = self._inner(layer).weights(layer.layer, in_slots, out_slots)
        return self._rekey(layer, found)

    def compact_config(self, layer, config, keep_in, keep_out):
        inner = _strip_build(config["layer"])
        inner["config"] = self._inner(layer).compact_config(
            layer.layer, inner["config"], keep_in, keep_out
        )
        return {**config, "layer": inner}

    def filter_kernel(self, layer):
        return self._inner(layer).filter_kernel(layer.layer)

    def filter_matrix(self, layer):
        return self._inner(layer).filter_matrix(layer.layer)

    def filter_kernel_positions(self, layer):
        positions = self._inner(layer).filter_kernel_positions(layer.layer)
        inner_vars = _variables(layer.layer)
        outer = {id(v): k for k, v in _variables(layer).items()}
        return [
            (outer[id(inner_vars[key])], axis, index)
            for key, axis, index in positions
        ]


def _time_distributed_cost(layer, ins, outs):
    fn = _cost._COSTS.get(type(layer.layer))
    if fn is None:  # a weightless inner layer costs nothing, as outside
        return 0
    inner = fn(
        layer.layer, [_drop_time(s) for s in ins],
        [_drop_time(s) for s in outs],
    )
    return int(ins[0][1]) * int(inner)


class ResizingRule(PassThrough):
    """`Resizing` (and `keras.ops.image.resize`): every interpolation is a
    weighted sum within one channel, so a zero channel stays zero; padding
    to the aspect ratio with a non-zero `fill_value` makes it non-zero."""

    def propagate(self, ctx, layer, inputs, output_shapes):
        if len(inputs) != 1:
            return ctx.barrier(
                layer, inputs, output_shapes, "a tensor size argument"
            )
        outputs = super().propagate(ctx, layer, inputs, output_shapes)
        if outputs[0] is not inputs[0].slots:
            return outputs
        if getattr(layer, "pad_to_aspect_ratio", False) and (
            getattr(layer, "fill_value", 0.0) != 0
        ):
            return [ctx.with_live(outputs[0], True, "fill_value != 0")]
        return outputs


class ResizeOpRule(ResizingRule):
    def propagate(self, ctx, layer, inputs, output_shapes):
        fmt = layer.data_format or keras.config.image_data_format()
        if fmt != "channels_last":
            return ctx.barrier(
                layer, inputs, output_shapes, "data_format='channels_first'"
            )
        return super().propagate(ctx, layer, inputs, output_shapes)


def _index_key(node):
    args = node.arguments.args
    return args[1] if len(args) > 1 else node.arguments.kwargs.get("key")


def _keeps_last_axis(key, rank):
    """Whether indexing with `key` keeps the last axis whole."""
    if not isinstance(key, tuple):
        key = (key,)
    if any(k is None for k in key):
        return False  # new axes: positions move
    if Ellipsis in key:
        after = key[key.index(Ellipsis) + 1:]
        last = after[-1] if after else slice(None)
    elif len(key) < rank:
        last = slice(None)
    else:
        last = key[rank - 1]
    if isinstance(last, slice):
        return last == slice(None) or last == slice(None, None, None)
    return False


class GetItemOpRule(ChannelRule):
    """`x[...]` that keeps the channel axis whole (spatial slicing,
    `x[:, ::2, ::2, :]`, `x[:, 1:-1]`): a pass-through."""

    elementwise = True

    def propagate(self, ctx, layer, inputs, output_shapes):
        node = ctx.node
        rank = len(inputs[0].shape)
        if len(node.input_tensors) != 1 or not _keeps_last_axis(
            _index_key(node), rank
        ) or len(output_shapes[0]) < 2 or (
            output_shapes[0][-1] != inputs[0].shape[-1]
        ):
            return ctx.barrier(
                layer, inputs, output_shapes, "indexes the channel axis"
            )
        return [inputs[0].slots]


class GroupNormalizationRule(ChannelRule):
    """GroupNormalization over the channel axis: whole groups are units.

    Channel `c` belongs to group `c // (channels / groups)`; the channels of
    one group are coupled, so a removed unit is a whole group (and the
    filters feeding it). The other groups' statistics do not change.
    Masking zeroes the group's gamma and beta: its output is 0 whatever
    comes in (with `scale=False`, a removed group must receive zeros).
    """

    elementwise = True

    def propagate(self, ctx, layer, inputs, output_shapes):
        rank = len(output_shapes[0])
        if layer.axis % rank != rank - 1:
            return ctx.barrier(
                layer, inputs, output_shapes, "normalises a non-last axis"
            )
        slots = inputs[0].slots
        groups = len(slots) if layer.groups == -1 else layer.groups
        per = len(slots) // groups
        for g in range(groups):
            members = slots[g * per:(g + 1) * per]
            ctx.couple(members, np.repeat(members[:1], per))
        if layer.scale:
            return [ctx.with_live(slots, False)]
        ctx.require_zero(slots)
        return [slots]

    def weights(self, layer, in_slots, out_slots):
        slots = in_slots[0]
        found = {}
        if layer.scale:
            found["gamma"] = [WeightAxis(0, slots, True)]
        if layer.center:
            found["beta"] = [WeightAxis(0, slots, True)]
        return found

    def compact_config(self, layer, config, keep_in, keep_out):
        if layer.groups == -1:
            return config
        per = len(keep_in[0]) // layer.groups
        return {**config, "groups": int(keep_in[0].sum()) // per}


def _resize_cost(layer, ins, outs):
    return 0  # interpolation: a few multiply-adds per output, not counted


def _register():
    recurrent = RecurrentRule()
    for name in ("SimpleRNN", "LSTM", "GRU", "ConvLSTM1D", "ConvLSTM2D",
                 "ConvLSTM3D", "Bidirectional"):
        cls = getattr(L, name, None)
        if cls is not None:
            register_channel_rule(cls, recurrent)
            _cost.register_layer_cost(cls, _rnn_cost)
    register_channel_rule(L.TimeDistributed, TimeDistributedRule())
    _cost.register_layer_cost(L.TimeDistributed, _time_distributed_cost)
    register_channel_rule(L.Resizing, ResizingRule())
    register_channel_rule(ops_image.Resize, ResizeOpRule())
    _cost.register_layer_cost(ops_image.Resize, _resize_cost)
    register_channel_rule(ops_numpy.GetItem, GetItemOpRule())
    _cost.register_layer_cost(ops_numpy.GetItem, _resize_cost)
    register_channel_rule(L.GroupNormalization, GroupNormalizationRule())
    # `Functional.call` on symbolic inputs (a traced model subclass calling
    # `super().call`) converts them: an identity on channels.
    register_channel_rule(ops_core.ConvertToTensor, ElementwiseOpRule())
    _cost.register_layer_cost(ops_core.ConvertToTensor, _resize_cost)


_register()
