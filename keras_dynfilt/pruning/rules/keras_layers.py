"""Channel rules and cost formulas of the Keras layers (`keras.layers`).

Each rule is registered for an exact layer class (see
`keras_dynfilt.pruning.rules.base`); its `macs` is the layer's cost.
FLOPs are counted as multiply-adds: convolutions (plain, grouped,
depthwise, separable, transposed), dense layers and normalisation layers
(one multiply-add per element: the folded scale and shift); layers that
only compare, add or copy count zero.
"""

import math
import types
import warnings
import weakref

import keras
import numpy as np
from keras import ops

from keras_dynfilt.pruning.rules.base import (
    ChannelRule,
    TensorSlots,
    WeightAxis,
    _variables,
    get_channel_rule,
    get_layer_cost,
    held_slots,
    register_channel_rule,
    register_layer_cost,
)

L = keras.layers


def _prod(dims):
    return math.prod(int(d) for d in dims)


def per_element_macs(layer, ins, outs):
    """One multiply-add per output element (a folded scale and shift)."""
    return _prod(outs[0][1:])


def _last_axis(axis, rank):
    return axis is not None and axis % rank == rank - 1


def _channels_last(layer):
    return getattr(layer, "data_format", "channels_last") in (
        None,
        "channels_last",
    )


# Plain function -> behaviour: probing runs a few backend ops, and a large
# model asks about the same few functions hundreds of times.
_BEHAVIOURS = weakref.WeakKeyDictionary()


def activation_behaviour(activation):
    """`"zero"`, `"nonzero"` (elementwise, f(0) != 0) or `"coupling"`.

    Decided numerically: an activation is elementwise when applying it to a
    vector equals applying it to each entry alone, and zero-preserving when
    f(0) == 0. Only zero-preserving elementwise activations let a pruned
    (zero) channel stay exactly zero.
    """
    if activation is None:
        return "zero"
    if isinstance(activation, types.FunctionType):  # stateless: remembered
        found = _BEHAVIOURS.get(activation)
        if found is None:
            found = _BEHAVIOURS[activation] = _probe_behaviour(activation)
        return found
    return _probe_behaviour(activation)


def _probe_behaviour(activation):
    probe = np.array([[-1.5, -0.25, 0.5, 2.0]], "float32")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            whole, alone, at_zero = _probe(activation, probe)
    except Exception:  # noqa: BLE001 - any failure means "cannot reason"
        return "coupling"
    if whole.shape != probe.shape or not np.allclose(whole, alone, atol=1e-6):
        return "coupling"
    return "zero" if np.all(at_zero == 0) else "nonzero"


def _probe(activation, probe):
    whole = ops.convert_to_numpy(activation(ops.convert_to_tensor(probe)))
    alone = np.concatenate(
        [
            ops.convert_to_numpy(
                activation(ops.convert_to_tensor(probe[:, i : i + 1]))
            )
            for i in range(probe.shape[1])
        ],
        axis=1,
    )
    at_zero = ops.convert_to_numpy(activation(ops.zeros((1, 4), "float32")))
    return whole, alone, at_zero


def _check_activation(ctx, layer, inputs, output_shapes, slots):
    """Fixes `slots` (or returns a barrier) for activations that mix
    channels; marks them non-zero-when-removed where `f(0) != 0`."""
    behaviour = activation_behaviour(getattr(layer, "activation", None))
    if behaviour == "coupling":
        if isinstance(layer, L.Activation):
            return ctx.barrier(
                layer, inputs, output_shapes, "its activation mixes channels"
            )
        # The kernel still reads its inputs channel by channel; only the
        # output channels are tied together.
        ctx.fix(slots, "the activation mixes channels")
    elif behaviour == "nonzero":
        # Fine for an elementwise consumer (a gate: 0 * sigmoid(0) = 0);
        # a consumer that slices the channel fixes it (`require_zero`).
        slots = ctx.with_live(slots, True, "activation(0) != 0")
    return [slots]


class PassThrough(ChannelRule):
    """Channel-wise layers without channel-indexed weights.

    Activations that keep 0 at 0, pooling, dropout, padding, cropping,
    upsampling, global pooling: output channel `c` depends only on input
    channel `c`, and a zero channel stays zero.
    """

    elementwise = True

    def __init__(self, pointwise=None):
        if pointwise is not None:
            self.pointwise = pointwise

    def propagate(self, ctx, layer, inputs, output_shapes):
        if len(inputs) != 1 or len(output_shapes) != 1:
            return ctx.barrier(layer, inputs, output_shapes, "several inputs")
        if not _channels_last(layer):
            return ctx.barrier(
                layer, inputs, output_shapes, "data_format='channels_first'"
            )
        if output_shapes[0][-1] != inputs[0].shape[-1]:
            return ctx.barrier(
                layer, inputs, output_shapes, "changes the channel count"
            )
        return [inputs[0].slots]


class ActivationRule(PassThrough):
    def is_pointwise(self, layer):
        name = getattr(layer.activation, "__name__", "")
        return name not in ("softmax", "log_softmax")

    def propagate(self, ctx, layer, inputs, output_shapes):
        outputs = super().propagate(ctx, layer, inputs, output_shapes)
        if outputs[0] is not inputs[0].slots:
            return outputs
        return _check_activation(ctx, layer, inputs, output_shapes, outputs[0])


class PReLURule(PassThrough):
    pointwise = True

    def macs(self, layer, ins, outs):
        return 0

    def weights(self, layer, in_slots, out_slots):
        alpha_shape = tuple(layer.alpha.shape)
        if alpha_shape[-1] == len(in_slots[0]) and len(in_slots[0]) > 1:
            return {"alpha": [WeightAxis(-1, in_slots[0], False)]}
        return {}


class SoftmaxRule(PassThrough):
    def propagate(self, ctx, layer, inputs, output_shapes):
        rank = len(output_shapes[0])
        axes = layer.axis if isinstance(layer.axis, (list, tuple)) else [
            layer.axis
        ]
        if any(_last_axis(a, rank) for a in axes):
            return ctx.barrier(
                layer, inputs, output_shapes, "softmax over the channel axis"
            )
        outputs = super().propagate(ctx, layer, inputs, output_shapes)
        if outputs[0] is not inputs[0].slots:
            return outputs
        # Over other axes a zero channel becomes 1 / n.
        return [ctx.with_live(outputs[0], True, "softmax(0) != 0")]


def _non_last_axis(ctx, layer, inputs, output_shapes):
    """The barrier of a normalisation over a non-last axis."""
    return ctx.barrier(
        layer, inputs, output_shapes, "normalises a non-last axis"
    )


def _gamma_beta(layer, slots):
    """The zeroed `gamma` / `beta` axes of a normalisation over `slots`."""
    found = {}
    if layer.scale:
        found["gamma"] = [WeightAxis(0, slots, True)]
    if layer.center:
        found["beta"] = [WeightAxis(0, slots, True)]
    return found


class BatchNormalizationRule(PassThrough):
    """BatchNormalization, with or without `scale` / `center`.

    With `scale`, masking zeroes gamma (and beta): the output channel is 0
    whatever comes in. Without it, masking zeroes beta and the moving mean:
    then BN(0) = 0 in inference and in training (a zero channel has batch
    mean 0), so a zero channel stays zero.
    """

    pointwise = True

    macs = staticmethod(per_element_macs)

    def propagate(self, ctx, layer, inputs, output_shapes):
        if not _last_axis(layer.axis, len(output_shapes[0])):
            return _non_last_axis(ctx, layer, inputs, output_shapes)
        outputs = super().propagate(ctx, layer, inputs, output_shapes)
        if layer.scale and outputs[0] is inputs[0].slots:
            return [ctx.with_live(outputs[0], False)]
        return outputs

    def weights(self, layer, in_slots, out_slots):
        slots = in_slots[0]
        found = _gamma_beta(layer, slots)
        found["moving_mean"] = [WeightAxis(0, slots, not layer.scale)]
        found["moving_variance"] = [WeightAxis(0, slots, False)]
        return found


class NormalizationOverChannelsRule(PassThrough):
    """LayerNormalization: statistics over channels (GroupNormalization
    has `GroupNormalizationRule`, by whole groups).

    The mean and variance over the channel axis change when channels are
    removed, so the input channels are fixed (never pruned); normalising
    other axes only is a plain pass-through.
    """

    macs = staticmethod(per_element_macs)

    def propagate(self, ctx, layer, inputs, output_shapes):
        outputs = super().propagate(ctx, layer, inputs, output_shapes)
        rank = len(output_shapes[0])
        axes = getattr(layer, "axis", -1)
        axes = axes if isinstance(axes, (list, tuple)) else [axes]
        if isinstance(layer, L.GroupNormalization) or any(
            _last_axis(a, rank) for a in axes
        ):
            ctx.fix(
                inputs[0].slots,
                f"{type(layer).__name__} computes statistics over channels",
            )
        elif outputs[0] is inputs[0].slots:
            # Over other axes a zero channel becomes its (unmasked) beta.
            return [ctx.with_live(outputs[0], True, "normalises 0 to beta")]
        return outputs


class ProducerRule(ChannelRule):
    """Conv1D/2D/3D (grouped too), Conv*DTranspose and Dense.

    Output channels are new filters. Grouped convolutions keep `groups`
    uniform: filter `j` of every group is one unit, and input channel `i` of
    every group is coupled; with `groups == input channels` (depthwise
    written as a grouped convolution) the layer follows its input instead.
    """

    elementwise = True

    is_producer = True

    def __init__(self, count="filters", transpose=False):
        self.count = count
        self.transpose = transpose
        # Keras kernels: (..., in, out); transposed convolutions (..., out, in)
        self.in_axis, self.out_axis = (-1, -2) if transpose else (-2, -1)

    def _mode(self, layer, channels_in):
        groups = getattr(layer, "groups", 1)
        if groups == 1:
            return "dense"
        if groups == channels_in:
            return "depthwise"
        return "grouped"

    def propagate(self, ctx, layer, inputs, output_shapes):
        if len(inputs) != 1 or inputs[0].slots is None:
            return ctx.barrier(layer, inputs, output_shapes, "input unknown")
        if not _channels_last(layer):
            return ctx.barrier(
                layer, inputs, output_shapes, "data_format='channels_first'"
            )
        slots_in = inputs[0].slots
        n = getattr(layer, self.count)
        mode = self._mode(layer, len(slots_in))
        if mode != "depthwise":
            ctx.require_zero(slots_in)  # kernel rows read every channel
        if mode == "dense":
            out = ctx.new_filters(layer, n)
        elif mode == "depthwise":
            # Its filters are masked with the channel: 0 whatever comes in.
            out = ctx.with_live(np.repeat(slots_in, n // len(slots_in)), False)
        else:
            groups = layer.groups
            per_in, per_out = len(slots_in) // groups, n // groups
            out = ctx.new_filters(layer, n)
            for k in range(1, groups):
                ctx.couple(
                    slots_in[k * per_in : (k + 1) * per_in], slots_in[:per_in]
                )
                ctx.couple(out[k * per_out : (k + 1) * per_out], out[:per_out])
        return _check_activation(ctx, layer, inputs, output_shapes, out)

    def weights(self, layer, in_slots, out_slots):
        slots_in, out = in_slots[0], out_slots[0]
        mode = self._mode(layer, len(slots_in))
        kernel = [WeightAxis(self.out_axis, out, True)]
        if mode == "dense":
            kernel.append(WeightAxis(self.in_axis, slots_in, False))
        elif mode == "grouped":
            per_in = len(slots_in) // layer.groups
            kernel.append(WeightAxis(self.in_axis, slots_in[:per_in], False))
        found = {"kernel": kernel}
        if getattr(layer, "use_bias", False):
            found["bias"] = [WeightAxis(0, out, True)]
        return found

    def compact_config(self, layer, config, keep_in, keep_out):
        config = dict(config)
        config[self.count] = int(keep_out[0].sum())
        if self._mode(layer, len(keep_in[0])) == "depthwise":
            config["groups"] = int(keep_in[0].sum())
        return config

    def macs(self, layer, ins, outs):
        # Channel counts from the shapes: they also price compacted widths.
        if self.transpose:
            return (
                _prod(ins[0][1:-1]) * ins[0][-1] * _prod(layer.kernel_size)
                * outs[0][-1]
            )
        if self.count == "units":  # Dense
            return _prod(ins[0][1:]) * outs[0][-1]
        groups = getattr(layer, "groups", 1)
        per_group = layer.kernel.shape[-2]
        if groups == 1 or per_group != 1:  # per_group == 1: depthwise-style
            per_group = ins[0][-1] // groups
        return _prod(outs[0][1:]) * _prod(layer.kernel_size) * per_group

    def filter_kernel(self, layer):
        channels_in = layer.kernel.shape[self.in_axis]
        if getattr(layer, "groups", 1) > 1 and channels_in == 1:
            return None  # depthwise written as a grouped convolution
        return ("kernel", self.out_axis)


class DepthwiseRule(ChannelRule):
    """DepthwiseConv1D/2D: output `c * m + j` follows input channel `c`."""

    elementwise = True

    def propagate(self, ctx, layer, inputs, output_shapes):
        if len(inputs) != 1 or not _channels_last(layer):
            return ctx.barrier(
                layer, inputs, output_shapes, "data_format='channels_first'"
            )
        out = np.repeat(inputs[0].slots, layer.depth_multiplier)
        # Its filters are masked with the channel: 0 whatever comes in.
        out = ctx.with_live(out, False)
        return _check_activation(ctx, layer, inputs, output_shapes, out)

    def macs(self, layer, ins, outs):
        return _prod(outs[0][1:]) * _prod(layer.kernel_size)

    def weights(self, layer, in_slots, out_slots):
        found = {"kernel": [WeightAxis(-2, in_slots[0], True)]}
        if layer.use_bias:
            found["bias"] = [WeightAxis(0, out_slots[0], True)]
        return found


class SeparableRule(ProducerRule):
    """SeparableConv1D/2D: a depthwise consumer plus a pointwise producer."""

    def __init__(self):
        super().__init__("filters")

    def _mode(self, layer, channels_in):
        return "dense"

    def macs(self, layer, ins, outs):
        spatial = _prod(outs[0][1:-1])
        mid = ins[0][-1] * layer.depth_multiplier
        return spatial * mid * (_prod(layer.kernel_size) + outs[0][-1])

    def weights(self, layer, in_slots, out_slots):
        slots_in, out = in_slots[0], out_slots[0]
        mid = np.repeat(slots_in, layer.depth_multiplier)
        found = {
            "depthwise_kernel": [WeightAxis(-2, slots_in, False)],
            "pointwise_kernel": [
                WeightAxis(-2, mid, False),
                WeightAxis(-1, out, True),
            ],
        }
        if layer.use_bias:
            found["bias"] = [WeightAxis(0, out, True)]
        return found

    def filter_kernel(self, layer):
        return ("pointwise_kernel", -1)


class EmbeddingRule(ChannelRule):
    """Embedding: the `output_dim` embedding columns are filters."""

    elementwise = True

    needs_input_slots = False

    def propagate(self, ctx, layer, inputs, output_shapes):
        return [ctx.new_filters(layer, layer.output_dim)]

    def macs(self, layer, ins, outs):
        return 0  # a lookup

    def weights(self, layer, in_slots, out_slots):
        return {"embeddings": [WeightAxis(1, out_slots[0], True)]}

    def compact_config(self, layer, config, keep_in, keep_out):
        return {**config, "output_dim": int(keep_out[0].sum())}

    def filter_kernel(self, layer):
        return ("embeddings", 1)


class MergeRule(ChannelRule):
    """Add, Subtract, Multiply, Maximum, Minimum, Average.

    Channel `c` of every input and of the output are one unit. An input
    broadcast along channels (size 1) couples nothing. A removed channel is
    zero at the output when it is zero on every input, or, for `Multiply`
    (`product=True`), on *any* input: a squeeze-and-excitation gate
    `x * sigmoid(g)` is removable with `x`, the gate's filter with it.
    """

    elementwise = True

    def __init__(self, product=False):
        self.product = product

    def propagate(self, ctx, layer, inputs, output_shapes):
        width = output_shapes[0][-1]
        full = [t for t in inputs if t.shape[-1] == width]
        if any(t.slots is None for t in inputs) or not full or any(
            t.shape[-1] not in (1, width) for t in inputs
        ):
            return ctx.barrier(
                layer, inputs, output_shapes, "inputs of unknown channels"
            )
        return [merge_slots(ctx, full, len(full) < len(inputs), self.product)]


def merge_slots(ctx, full, broadcast, product):
    """Couples the full-width inputs of an elementwise merge; the output's
    slots, non-zero-when-removed as the merge decides."""
    for t in full[1:]:
        ctx.couple(t.slots, full[0].slots)
    flags = [ctx.is_live(t.slots) for t in full]
    if product:
        live = np.logical_and.reduce(flags)
    else:
        # x + b with b broadcast along channels: b is no part of the unit.
        live = np.logical_or.reduce(flags) | broadcast
    return ctx.with_live(full[0].slots, live, "merged with a non-zero value")


class ConcatenateRule(MergeRule):
    """Concatenate: along channels the output slots are the inputs' in order
    (channel offsets); along another axis it couples like a merge."""

    def propagate(self, ctx, layer, inputs, output_shapes):
        rank = len(output_shapes[0])
        if not _last_axis(layer.axis, rank):
            return super().propagate(ctx, layer, inputs, output_shapes)
        if any(t.slots is None for t in inputs):
            return ctx.barrier(
                layer, inputs, output_shapes, "inputs of unknown channels"
            )
        return [np.concatenate([t.slots for t in inputs])]


def _spatial_size(shape):
    dims = shape[1:-1]
    if any(d is None for d in dims):
        return None
    return int(np.prod(dims, dtype=np.int64)) if dims else 1


class FlattenRule(ChannelRule):
    """Flatten: channel `c` becomes the input units `p * C + c`."""

    elementwise = True

    def propagate(self, ctx, layer, inputs, output_shapes):
        shape = inputs[0].shape
        size = _spatial_size(shape)
        if size is None or not _channels_last(layer):
            return ctx.barrier(
                layer, inputs, output_shapes, "unknown spatial size"
            )
        return [np.tile(inputs[0].slots, size)]


class ReshapeRule(ChannelRule):
    """The `Reshape` layer and `keras.ops.reshape`: one rule for both.

    Reshaping keeps the elements' order, so element `p * C + c` of the
    input (channel `c`) lands on output channel `(p * C + c) mod D`. When
    the output's last axis `D` is a multiple of the input's channels `C`
    (the same axis, a flatten, `(H, W, C) -> (H, W * C)`), that is channel
    `c` again, every `C` positions: the output's slots are the input's,
    tiled `D / C` times, and removing a channel shrinks `D` with it. A
    reshape that splits the channels across axes (`Conv2D(36)` then
    `Reshape((-1, 4))`, the anchor heads of detectors) holds its channels
    fixed; its target shape is never rewritten.

    Args:
        key: The config key of the target shape (`"target_shape"` for the
            layer, `"newshape"` for the op).
    """

    elementwise = True

    def __init__(self, key="target_shape"):
        self.key = key

    def macs(self, layer, ins, outs):
        return 0

    def propagate(self, ctx, layer, inputs, output_shapes):
        channels, width = inputs[0].shape[-1], output_shapes[0][-1]
        if len(inputs) != 1 or channels is None or width is None:
            return ctx.barrier(
                layer, inputs, output_shapes, "reshape of unknown widths"
            )
        if width % channels == 0:
            return [np.tile(inputs[0].slots, width // channels)]
        reason = "reshape splits the channel axis"
        ctx.fix(inputs[0].slots, reason)
        slots = ctx.new_zeros(width)
        ctx.fix(slots, reason)
        return [slots]

    def compact_config(self, layer, config, keep_in, keep_out):
        target = list(config[self.key])
        width = len(keep_out[0])
        if width % len(keep_in[0]) or target[-1] in (-1, None):
            return config  # channels held, or the last axis is inferred
        target[-1] = int(keep_out[0].sum())
        return {**config, self.key: type(config[self.key])(target)}


class InputLayerRule(ChannelRule):
    """A nested model's input: its `batch_shape` follows the kept channels."""

    elementwise = True

    def propagate(self, ctx, layer, inputs, output_shapes):
        return [inputs[0].slots]

    def compact_config(self, layer, config, keep_in, keep_out):
        shape = list(config["batch_shape"])
        shape[-1] = int(keep_out[0].sum())
        return {**config, "batch_shape": tuple(shape)}


def _per_channel(value, width):
    """`value` as a NumPy array when it holds one entry per channel."""
    array = np.asarray(value, "float64")
    if array.ndim and array.shape[-1] == width and width > 1:
        return array
    return None


class RescalingRule(PassThrough):
    """Rescaling: `x * scale + offset`, channel by channel.

    A zero channel stays zero when its offset is 0 (otherwise the channel
    is non-zero when removed, which only an elementwise consumer accepts).
    Per-channel `scale` / `offset` lists are sliced on compaction.
    """

    def propagate(self, ctx, layer, inputs, output_shapes):
        outputs = super().propagate(ctx, layer, inputs, output_shapes)
        slots = inputs[0].slots
        if outputs[0] is not slots:
            return outputs
        for value in (layer.scale, layer.offset):
            array = np.asarray(value)
            if array.ndim and array.shape[-1] not in (1, len(slots)):
                return ctx.barrier(
                    layer, inputs, output_shapes,
                    "scale or offset of another shape than the channels",
                )
        offset = np.broadcast_to(
            np.asarray(layer.offset, "float64"), (len(slots),)
        )
        if np.any(offset != 0):
            return [ctx.with_live(slots, offset != 0, "offset != 0")]
        return outputs

    def compact_config(self, layer, config, keep_in, keep_out):
        config = dict(config)
        width = len(keep_in[0])
        for key in ("scale", "offset"):
            array = _per_channel(config[key], width)
            if array is not None:
                config[key] = np.compress(keep_in[0], array, axis=-1).tolist()
        return config


class UnitNormalizationRule(PassThrough):
    """UnitNormalization: a zero channel leaves the norm unchanged; one that
    stays non-zero when removed would change it."""

    def propagate(self, ctx, layer, inputs, output_shapes):
        ctx.require_zero(inputs[0].slots)
        return super().propagate(ctx, layer, inputs, output_shapes)


class MaxPoolingRule(PassThrough):
    """MaxPooling: a pass-through; after a `-inf` spatial padding that
    every pooling window overlaps by less than its size, the channels are
    zero when removed again (max(0, -inf) = 0).

    `keras.ops.pad` with `-inf` (`keras_ops.PadOpRule`) leaves the note
    `NEG_INF_PADS` on its output slots: the spatial pads, and whether the
    channel was live before the padding.
    """

    def propagate(self, ctx, layer, inputs, output_shapes):
        outputs = super().propagate(ctx, layer, inputs, output_shapes)
        slots = inputs[0].slots
        if outputs[0] is not slots or layer.padding != "valid":
            return outputs
        found = ctx.annotations(slots, NEG_INF_PADS)
        if not slots.size or any(f is None for f in found):
            return outputs
        pool = tuple(layer.pool_size)
        if not all(
            len(pads) == len(pool) and all(
                max(p) < k for p, k in zip(pads, pool)
            )
            for pads, _ in found
        ):
            return outputs
        # Non-zero before the padding: still non-zero.
        return [ctx.reset_live(slots, [live for _, live in found])]


class GroupNormalizationRule(ChannelRule):
    """GroupNormalization over the channel axis: whole groups are units.

    Channel `c` belongs to group `c // (channels / groups)`; the channels of
    one group are coupled, so a removed unit is a whole group (and the
    filters feeding it). The other groups' statistics do not change.
    Masking zeroes the group's gamma and beta: its output is 0 whatever
    comes in (with `scale=False`, a removed group must receive zeros).
    `groups` shrinks with the kept groups.
    """

    elementwise = True
    pointwise = False

    macs = staticmethod(per_element_macs)

    def propagate(self, ctx, layer, inputs, output_shapes):
        if not _last_axis(layer.axis, len(output_shapes[0])):
            return _non_last_axis(ctx, layer, inputs, output_shapes)
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
        return _gamma_beta(layer, in_slots[0])

    def compact_config(self, layer, config, keep_in, keep_out):
        if layer.groups == -1:
            return config
        per = len(keep_in[0]) // layer.groups
        return {**config, "groups": int(keep_in[0].sum()) // per}


def _strip_build(serialized):
    """A nested layer config without its build shapes (they name the
    original input width)."""
    serialized = dict(serialized)
    serialized.pop("build_config", None)
    return serialized


class RecurrentRule(ChannelRule):
    """SimpleRNN, LSTM, GRU, ConvLSTM1D/2D/3D and Bidirectional: consumers
    of their input features.

    Every weight named `kernel` (the input kernel of each cell; both
    directions of a `Bidirectional`) has the input features on axis -2:
    `(features, gates * units)`, or `(..., features, gates * filters)` for
    ConvLSTM; its rows are sliced with the channels feeding the layer. The
    recurrent width and the outputs (sequences and states) stay fixed.
    """

    def propagate(self, ctx, layer, inputs, output_shapes):
        if not _channels_last(layer):
            return ctx.barrier(
                layer, inputs, output_shapes, "data_format='channels_first'"
            )
        for t in inputs[1:]:  # initial states, constants: not pruned
            ctx.fix(t.slots, f"a state of {type(layer).__name__}")
        return [
            held_slots(ctx, shape, "the recurrent width is held fixed")
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

    def macs(self, layer, ins, outs):
        """Per step: `gates x units x (features + units)` (LSTM 4 gates,
        GRU 3, SimpleRNN 1); ConvLSTM: the input and recurrent convolutions
        of its 4 gates over the output positions. Times the steps."""
        if isinstance(layer, L.Bidirectional):
            return sum(
                self.macs(inner, ins, outs)
                for inner in (layer.forward_layer, layer.backward_layer)
            )
        steps, features = int(ins[0][1]), int(ins[0][-1])
        if isinstance(layer, (L.LSTM, L.GRU, L.SimpleRNN)):
            gates = {L.LSTM: 4, L.GRU: 3, L.SimpleRNN: 1}[type(layer)]
            units = layer.units
            return steps * gates * units * (features + units)
        filters = layer.filters
        spatial = outs[0][2:-1] if layer.return_sequences else outs[0][1:-1]
        return steps * _prod(spatial) * _prod(layer.kernel_size) * 4 * (
            filters * (features + filters)
        )


def _drop_time(shape):
    return (shape[0],) + tuple(shape[2:])


class TimeDistributedRule(ChannelRule):
    """`TimeDistributed(inner)`: the inner layer's rule on each step, its
    cost times the steps; the wrapped layer's config is compacted."""

    elementwise = True

    def _inner(self, layer):
        return get_channel_rule(layer.layer)

    def propagate(self, ctx, layer, inputs, output_shapes):
        inner = self._inner(layer)
        if inner is None:
            return ctx.barrier(
                layer, inputs, output_shapes,
                "no channel rule registered for the wrapped "
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

    def _outer_keys(self, layer):
        """The wrapped layer's weight keys -> the wrapper's (the same
        variables)."""
        outer = {id(v): k for k, v in _variables(layer).items()}
        return {
            k: outer[id(v)] for k, v in _variables(layer.layer).items()
        }

    def weights(self, layer, in_slots, out_slots):
        keys = self._outer_keys(layer)
        found = self._inner(layer).weights(layer.layer, in_slots, out_slots)
        return {keys[k]: axes for k, axes in found.items()}

    def compact_config(self, layer, config, keep_in, keep_out):
        inner = _strip_build(config["layer"])
        inner["config"] = self._inner(layer).compact_config(
            layer.layer, inner["config"], keep_in, keep_out
        )
        return {**config, "layer": inner}

    def filter_kernel(self, layer):
        found = self._inner(layer).filter_kernel(layer.layer)
        if found is None:
            return None
        return self._outer_keys(layer)[found[0]], found[1]

    def filter_matrix(self, layer):
        return self._inner(layer).filter_matrix(layer.layer)

    def filter_kernel_positions(self, layer):
        keys = self._outer_keys(layer)
        return [
            (keys[key], axis, index)
            for key, axis, index in self._inner(layer).filter_kernel_positions(
                layer.layer
            )
        ]

    def macs(self, layer, ins, outs):
        fn = get_layer_cost(layer.layer)
        if fn is None:  # a weightless wrapped layer costs 0, as outside
            return 0
        inner = fn(
            layer.layer, [_drop_time(s) for s in ins],
            [_drop_time(s) for s in outs],
        )
        return int(ins[0][1]) * int(inner)


class ResizingRule(PassThrough):
    """`Resizing` (and `keras.ops.image.resize`): every interpolation is a
    weighted sum within one channel, so a zero channel stays zero; padding
    to the aspect ratio with a non-zero `fill_value` makes it non-zero when
    removed. Not counted (a few multiply-adds per output, as pooling)."""

    def macs(self, layer, ins, outs):
        return 0

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


#: The `RuleContext.annotate` key of a `-inf` spatial padding.
NEG_INF_PADS = "neg_inf_pads"


def _register():
    pass_through = PassThrough()
    for name in [
        "Dropout", "SpatialDropout1D",
        "SpatialDropout2D", "SpatialDropout3D", "GaussianNoise",
        "GaussianDropout", "AlphaDropout", "ActivityRegularization",
        "Identity",
        "AveragePooling1D", "AveragePooling2D", "AveragePooling3D",
        "GlobalAveragePooling1D", "GlobalAveragePooling2D",
        "GlobalAveragePooling3D", "GlobalMaxPooling1D", "GlobalMaxPooling2D",
        "GlobalMaxPooling3D", "ZeroPadding1D", "ZeroPadding2D",
        "ZeroPadding3D", "Cropping1D", "Cropping2D", "Cropping3D",
        "UpSampling1D", "UpSampling2D", "UpSampling3D",
    ]:
        if hasattr(L, name):
            register_channel_rule(getattr(L, name), pass_through)
    # Activation layers that keep 0 at 0, read after a producer by
    # cross-task probes (pointwise).
    activations = PassThrough(pointwise=True)
    for cls in (L.ReLU, L.LeakyReLU, L.ELU):
        register_channel_rule(cls, activations)
    max_pooling = MaxPoolingRule()
    for cls in (L.MaxPooling1D, L.MaxPooling2D, L.MaxPooling3D):
        register_channel_rule(cls, max_pooling)
    register_channel_rule(L.UnitNormalization, UnitNormalizationRule())
    register_channel_rule(L.Activation, ActivationRule())
    register_channel_rule(L.PReLU, PReLURule())
    register_channel_rule(L.Softmax, SoftmaxRule())
    register_channel_rule(L.BatchNormalization, BatchNormalizationRule())
    # LayerNormalization and RMSNormalization (exact or inexact mode):
    # `transformers`.
    register_channel_rule(L.GroupNormalization, GroupNormalizationRule())
    recurrent = RecurrentRule()
    for name in ("SimpleRNN", "LSTM", "GRU", "ConvLSTM1D", "ConvLSTM2D",
                 "ConvLSTM3D", "Bidirectional"):
        if hasattr(L, name):
            register_channel_rule(getattr(L, name), recurrent)
    register_channel_rule(L.TimeDistributed, TimeDistributedRule())
    register_channel_rule(L.Resizing, ResizingRule())
    for cls in (L.Conv1D, L.Conv2D, L.Conv3D):
        register_channel_rule(cls, ProducerRule("filters"))
    for cls in (L.Conv1DTranspose, L.Conv2DTranspose, L.Conv3DTranspose):
        register_channel_rule(cls, ProducerRule("filters", transpose=True))
    register_channel_rule(L.Dense, ProducerRule("units"))
    for cls in (L.DepthwiseConv1D, L.DepthwiseConv2D):
        register_channel_rule(cls, DepthwiseRule())
    for cls in (L.SeparableConv1D, L.SeparableConv2D):
        register_channel_rule(cls, SeparableRule())
    register_channel_rule(L.Embedding, EmbeddingRule())
    merge = MergeRule()
    for cls in (L.Add, L.Subtract, L.Maximum, L.Minimum, L.Average):
        register_channel_rule(cls, merge)
    register_channel_rule(L.Multiply, MergeRule(product=True))
    register_channel_rule(L.Rescaling, RescalingRule())
    register_channel_rule(L.Concatenate, ConcatenateRule())
    register_channel_rule(L.Flatten, FlattenRule())
    register_channel_rule(L.Reshape, ReshapeRule())
    register_channel_rule(L.InputLayer, InputLayerRule())
    # No channel rule (a barrier), but priced: a preprocessing layer
    # (x - mean) / sqrt(var), one per element.
    register_layer_cost(L.Normalization, per_element_macs)


_register()
