"""Channel rules and costs of Keras ops applied to tensors.

In a functional model, `x + y`, `x * 2.0`, `keras.ops.sigmoid(x)`,
`keras.ops.pad(x, ...)` or `keras.ops.split(x, 2, axis=-1)` become operation
nodes (`keras.src.ops.numpy.Add`, `keras.src.ops.nn.Sigmoid`, ...), not
layers: they have no weights, and their constant operands (`2.0`) live in
the node's arguments. Each gets the channel rule of its layer equivalent:

- elementwise ops of two tensors (`add`, `subtract`, `multiply`, `maximum`,
  `minimum`) couple channel `c` of their inputs like the merge layers;
- elementwise ops of one tensor (and scalar constants: `x * 2.0`,
  `x + 3.0`, `relu`, `sigmoid`, `cast`, ...) follow the channel; whether a
  zero channel stays zero is decided by evaluating the op at 0 with the
  node's own constants (`x * 2.0` keeps 0, `x + 3.0` does not);
- `concatenate` (channel offsets), `split` along channels (each output a
  slice; the reverse of `Concatenate`), `pad` (spatial: pass-through;
  channel axis: like `ChannelPadding`), `reshape` (the `Reshape` layer's
  rule, batch axis included), `image.resize` (the `Resizing` layer's),
  indexing that keeps the channel axis whole, reductions (`mean`, `max`,
  `sum`, ...) over other axes than channels.

A constant operand with one value per channel cannot be sliced on
compaction (it lives in the node's arguments): such a node is a barrier.
All of them cost 0 multiply-adds, as their layer equivalents do; `matmul`
(a barrier) is priced as a dense layer.

The op classes are Keras's private `keras.src.ops` classes (what a model's
config names), found through `keras_dynfilt._keras_private.op_class`;
rules match them exactly, as for layers.
"""

import math
import warnings

import keras
import numpy as np

from keras_dynfilt._keras_private import activation_op_class, op_class
from keras_dynfilt.pruning.rules.base import (
    _REGISTRY,
    ChannelRule,
    register_channel_rule,
    register_layer_cost,
)
from keras_dynfilt.pruning.rules.keras_layers import (
    NEG_INF_PADS,
    ReshapeRule,
    ResizingRule,
    _last_axis,
    merge_slots,
)

_KerasTensor = keras.KerasTensor


def _constants(node):
    """The node's non-tensor positional and keyword arguments."""
    args, kwargs = node.arguments.args, node.arguments.kwargs
    flat = keras.tree.flatten((list(args), dict(kwargs)))
    return [a for a in flat if not isinstance(a, _KerasTensor)]


def _per_channel_constant(node, width):
    """Whether a constant operand holds several values along channels."""
    for value in _constants(node):
        if isinstance(value, (bool, int, float, str, type(None))):
            continue
        try:
            shape = np.shape(keras.ops.convert_to_numpy(value))
        except Exception:  # noqa: BLE001 - not an array: not a constant
            continue
        if shape and shape[-1] > 1 and shape[-1] == width:
            return True
    return False


def _at_zero(node, op):
    """The op evaluated with every tensor input 0 (a 1-element probe of
    the input's rank), with the node's own constants; `None` if that
    fails."""
    probes = {}
    for t in node.input_tensors:
        probes[id(t)] = keras.ops.zeros((1,) * len(t.shape), t.dtype)
    try:
        args, kwargs = node.arguments.fill_in(probes)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out = op.call(*args, **kwargs)
        return np.asarray(keras.ops.convert_to_numpy(out), "float64")
    except Exception:  # noqa: BLE001 - any failure: cannot reason
        return None


def _channel_axes(axis, rank):
    if axis is None:
        return True
    axes = axis if isinstance(axis, (list, tuple)) else [axis]
    return any(_last_axis(a, rank) for a in axes)


class _OpRule(ChannelRule):
    """An op applied to tensors: no weights, 0 multiply-adds (as its layer
    equivalent)."""

    elementwise = True

    def macs(self, layer, ins, outs):
        return 0


class ElementwiseOpRule(_OpRule):
    """One tensor (plus scalar constants), elementwise: channel `c` -> `c`.

    With two or more tensors of the output's width, channel `c` of every
    input is coupled (as the merge layers); `product=True` ops (multiply)
    are zero when one input is zero, the others when all are.
    """

    elementwise = True

    def __init__(self, product=False, binary=False):
        self.product = product
        self.binary = binary

    def propagate(self, ctx, layer, inputs, output_shapes):
        if len(output_shapes) != 1 or not inputs:
            return ctx.barrier(layer, inputs, output_shapes, "several outputs")
        width = output_shapes[0][-1]
        if any(t.shape[-1] not in (1, width) for t in inputs):
            return ctx.barrier(
                layer, inputs, output_shapes, "inputs of other widths"
            )
        if _per_channel_constant(ctx.node, width):
            return ctx.barrier(
                layer, inputs, output_shapes,
                "a constant operand with one value per channel",
            )
        full = [t for t in inputs if t.shape[-1] == width]
        if not full:
            return ctx.barrier(
                layer, inputs, output_shapes, "no input has the channels"
            )
        if len(full) > 1 or len(full) < len(inputs):
            if not self.binary:
                return ctx.barrier(
                    layer, inputs, output_shapes, "several tensor inputs"
                )
            return [
                merge_slots(ctx, full, len(full) < len(inputs), self.product)
            ]
        slots = full[0].slots
        value = _at_zero(ctx.node, layer)
        if value is None:
            return ctx.barrier(
                layer, inputs, output_shapes, "could not evaluate it at 0"
            )
        if np.all(value == 0):
            return [slots]
        return [
            ctx.with_live(
                slots, True, f"{type(layer).__name__}(0) != 0",
                finite=bool(np.all(np.isfinite(value))),
            )
        ]


class DivideOpRule(ElementwiseOpRule):
    """`x / y`: follows `x` when `y` is a constant or broadcast along
    channels; a full-width divisor would divide removed channels by 0."""

    def propagate(self, ctx, layer, inputs, output_shapes):
        if len(inputs) == 1:  # a constant numerator or divisor: probed
            return super().propagate(ctx, layer, inputs, output_shapes)
        width = output_shapes[0][-1]
        if len(inputs) == 2 and inputs[0].shape[-1] == width and (
            inputs[1].shape[-1] == 1
        ):
            return [inputs[0].slots]
        return ctx.barrier(layer, inputs, output_shapes, "divides by a tensor")


class ConcatenateOpRule(_OpRule):
    """`keras.ops.concatenate`: channel offsets along the last axis, else
    coupled like a merge."""

    elementwise = True

    def propagate(self, ctx, layer, inputs, output_shapes):
        rank = len(output_shapes[0])
        if _last_axis(layer.axis, rank):
            return [np.concatenate([t.slots for t in inputs])]
        if any(t.shape[-1] != output_shapes[0][-1] for t in inputs):
            return ctx.barrier(
                layer, inputs, output_shapes, "inputs of other widths"
            )
        return [merge_slots(ctx, inputs, False, False)]


def _split_sizes(layer, width):
    sections = layer.indices_or_sections
    if isinstance(sections, int):
        return [width // sections] * sections
    bounds = [0] + [int(i) for i in sections] + [width]
    return list(np.diff(bounds))


class SplitOpRule(_OpRule):
    """`keras.ops.split` along channels: output `k` takes a slice of the
    input's channels (the reverse of `Concatenate`); along another axis
    every output follows the input."""

    elementwise = True

    def propagate(self, ctx, layer, inputs, output_shapes):
        slots = inputs[0].slots
        rank = len(inputs[0].shape)
        if not _last_axis(layer.axis, rank):
            return [slots for _ in output_shapes]
        sizes = _split_sizes(layer, len(slots))
        parts = list(np.split(slots, np.cumsum(sizes)[:-1]))
        ctx.separate(parts)  # each output keeps a channel
        return parts

    def compact_config(self, layer, config, keep_in, keep_out):
        if len(keep_out) < 2 or not all(
            k is not None for k in keep_out
        ) or sum(len(k) for k in keep_out) != len(keep_in[0]):
            return config  # not along channels: nothing changes
        kept = [int(k.sum()) for k in keep_out]
        return {
            **config,
            "indices_or_sections": [int(i) for i in np.cumsum(kept)[:-1]],
        }


def _pad_width(layer, rank):
    width = np.asarray(layer.pad_width, dtype="int64")
    return np.broadcast_to(width.reshape(-1, 2) if width.ndim else width,
                           (rank, 2))


def _pad_value(node):
    value = node.arguments.kwargs.get("constant_values")
    args = node.arguments.args
    if value is None and len(args) > 1:
        value = args[1]
    return 0.0 if value is None else float(value)


class PadOpRule(_OpRule):
    """`keras.ops.pad`: over spatial axes a pass-through for channels
    (constant 0, reflect, symmetric keep a zero channel zero; another
    constant makes it non-zero when removed); over the channel axis the
    padded channels are constants, like `ChannelPadding`."""

    elementwise = True

    def propagate(self, ctx, layer, inputs, output_shapes):
        rank = len(inputs[0].shape)
        slots = inputs[0].slots
        if len(ctx.node.input_tensors) != 1:
            return ctx.barrier(
                layer, inputs, output_shapes, "padding values are a tensor"
            )
        pads = _pad_width(layer, rank)
        value = _pad_value(ctx.node) if layer.mode == "constant" else 0.0
        before, after = (int(p) for p in pads[-1])
        if before or after:
            if np.ndim(layer.pad_width) != 2 or len(layer.pad_width) != rank:
                return ctx.barrier(
                    layer, inputs, output_shapes,
                    "pads the batch and channel axes alike",
                )
            if layer.mode != "constant":
                return ctx.barrier(
                    layer, inputs, output_shapes,
                    f"{layer.mode} padding of the channel axis",
                )
            slots = np.concatenate(
                [ctx.new_zeros(before), slots, ctx.new_zeros(after)]
            )
        if value != 0 and np.any(pads[:-1]):
            out = ctx.with_live(
                slots, True, f"pads with {value}",
                finite=bool(np.isfinite(value)),
            )
            if value == -np.inf and not (before or after):
                # A max pooling whose windows all hold a real value brings
                # the zeros back (pre-activation ResNet stems).
                spatial = tuple(map(tuple, pads[1:-1]))
                ctx.annotate(
                    out, NEG_INF_PADS,
                    [(spatial, bool(live)) for live in ctx.is_live(slots)],
                )
            return [out]
        if value != 0 and (before or after):
            live = np.zeros(len(slots), bool)
            live[:before] = True
            live[len(slots) - after :] = True
            return [ctx.with_live(slots, live, f"pads channels with {value}")]
        return [slots]

    def compact_config(self, layer, config, keep_in, keep_out):
        pads = np.array(config["pad_width"], "int64")
        if pads.ndim != 2 or not pads[-1].any():
            return config
        before, after = (int(p) for p in pads[-1])
        keep = keep_out[0]
        pads[-1] = [int(keep[:before].sum()),
                    int(keep[len(keep) - after :].sum())]
        return {**config, "pad_width": pads.tolist()}


class ResizeOpRule(ResizingRule):
    """`keras.ops.image.resize`: the `Resizing` layer's rule."""

    elementwise = True

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
    if any(k is Ellipsis for k in key):
        after = key[[k is Ellipsis for k in key].index(True) + 1:]
        last = after[-1] if after else slice(None)
    elif len(key) < rank:
        last = slice(None)
    else:
        last = key[rank - 1]
    return isinstance(last, slice) and last == slice(None)


class GetItemOpRule(_OpRule):
    """`x[...]` keeping the channel axis whole (spatial slicing,
    `x[:, ::2, ::2, :]`, `x[:, 1:]`): a pass-through; an index on the
    channel axis, or a new axis, is a barrier."""

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


class ReduceOpRule(_OpRule):
    """`mean`, `max`, `min`, `sum`, ... over axes other than channels."""

    elementwise = True

    def propagate(self, ctx, layer, inputs, output_shapes):
        rank = len(inputs[0].shape)
        if _channel_axes(getattr(layer, "axis", None), rank):
            return ctx.barrier(
                layer, inputs, output_shapes, "reduces over the channel axis"
            )
        return [inputs[0].slots for _ in output_shapes]


class SoftmaxOpRule(ElementwiseOpRule):
    def propagate(self, ctx, layer, inputs, output_shapes):
        if _channel_axes(getattr(layer, "axis", -1), len(output_shapes[0])):
            return ctx.barrier(
                layer, inputs, output_shapes, "softmax over the channel axis"
            )
        return [ctx.with_live(inputs[0].slots, True, "softmax(0) != 0")]


def _matmul(layer, ins, outs):
    return math.prod(int(d) for d in outs[0][1:]) * int(ins[0][-1])


_UNARY = (
    # keras.ops.nn
    "Relu", "Relu6", "Sigmoid", "Softplus", "Softsign", "SoftShrink",
    "SparsePlus", "Silu", "Swish", "Squareplus", "LogSigmoid", "LeakyRelu",
    "HardSigmoid", "HardSilu", "HardSwish", "Elu", "Selu", "Gelu", "Celu",
    "TanhShrink", "HardTanh", "HardShrink", "Threshold",
    # keras.ops.numpy
    "Absolute", "Abs", "Negative", "Square", "Sqrt", "Exp", "Expm1", "Log",
    "Log1p", "Tanh", "Sin", "Cos", "Sinh", "Arctan", "Arcsinh", "Sign",
    "Clip", "Round", "Floor", "Ceil", "Reciprocal", "Erf", "Power",
    "Copy", "NanToNum",
)
_BINARY = ("Add", "Subtract", "Maximum", "Minimum", "Multiply")
_REDUCE = ("Mean", "Max", "Min", "Sum", "Amax", "Amin", "Prod", "Var", "Std")


def get_channel_rule_of_class(cls):
    entry = _REGISTRY.get(cls)
    return None if entry is None else entry.rule


def _register():
    seen = set()

    def add(cls, rule):
        # Found through the public ops on a Keras that moved its op
        # modules, one class may answer for both `nn` and `numpy`.
        if cls is not None and cls not in seen:
            seen.add(cls)
            register_channel_rule(cls, rule)

    for name in _UNARY:
        for module in ("nn", "numpy"):
            add(op_class(module, name), ElementwiseOpRule())
    for name in _BINARY:
        add(
            op_class("numpy", name),
            ElementwiseOpRule(product=name == "Multiply", binary=True),
        )
    for name in ("Divide", "TrueDivide"):
        add(op_class("numpy", name), DivideOpRule())
    add(op_class("core", "Cast"), ElementwiseOpRule())
    for name in _REDUCE:
        add(op_class("numpy", name), ReduceOpRule())
    add(op_class("numpy", "Concatenate"), ConcatenateOpRule())
    add(op_class("numpy", "Split"), SplitOpRule())
    add(op_class("numpy", "Pad"), PadOpRule())
    add(op_class("numpy", "Reshape"), ReshapeRule("newshape"))
    add(op_class("numpy", "GetItem"), GetItemOpRule())
    add(op_class("image", "Resize"), ResizeOpRule())
    # `Functional.call` on symbolic inputs (a traced model subclass calling
    # `super().call`) converts them: an identity on channels.
    add(op_class("core", "ConvertToTensor"), ElementwiseOpRule())
    # `keras.activations.get("relu")(x)` in a traced `call` (keras-hub's
    # heads): activation functions that record operations of their own.
    for name in ("relu", "leaky_relu", "relu6", "elu", "selu", "gelu",
                 "silu", "hard_sigmoid", "hard_silu", "sigmoid", "tanh",
                 "softplus", "softsign", "mish", "exponential"):
        cls = activation_op_class(name)
        if cls is not None and cls not in seen and (
            get_channel_rule_of_class(cls) is None
        ):
            add(cls, ElementwiseOpRule())
    add(op_class("nn", "Softmax"), SoftmaxOpRule())
    # No channel rule (a barrier), but priced as a dense layer.
    matmul = op_class("numpy", "Matmul")
    if matmul is not None:
        register_layer_cost(matmul, _matmul)


_register()
