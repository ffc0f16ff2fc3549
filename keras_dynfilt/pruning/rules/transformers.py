"""Channel rules and costs of transformer layers: attention heads, head
dimensions, EinsumDense projections, normalisations over channels (exact,
or inexact in the explicit inexact mode), and this library's token layers
(`ClassToken`, `PositionEmbedding`).

`MultiHeadAttention` creates, besides its output channels, three kinds of
*internal* units that no tensor carries: whole heads, value dimensions and
key dimensions (each shared by every head). The rule returns their slot
arrays after the output's (the engine's contract for internal channels), so
that `weights`, `compact_config` and `compact_weights` see their keep
masks. Every unit is exact:

- head `h`: its query, key, value (and gate) columns and its rows of the
  output projection. Masked, its value projection is zero, so whatever its
  attention weights, the head contributes exactly zero;
- value dimension `j` of every head: a zero column of the values is a zero
  input row of the output projection;
- key dimension `j` of every head: a zero column of the queries and keys
  adds nothing to the logits `q . k / sqrt(key_dim)`. The compacted layer
  has a smaller `key_dim`, hence another scale; the query projection is
  multiplied by `sqrt(new_key_dim / key_dim)` on compaction (kernel and
  bias), so the logits, and the function, are unchanged.

When `key_dim == value_dim` (the usual case), key dimension `j` and value
dimension `j` are one unit, so the compacted layer keeps them equal: the
fused attention Keras uses on JAX (`ops.dot_product_attention`, for rank-3
inputs without dropout) refuses values of another head width than keys.
"""

import math
import weakref

import keras
import numpy as np

from keras_dynfilt._validation import check_bool
from keras_dynfilt.layers.class_token import ClassToken
from keras_dynfilt.layers.position_embedding import PositionEmbedding
from keras_dynfilt.pruning.rules.base import (
    ChannelRule,
    WeightAxis,
    _variables,
    register_channel_rule,
)
from keras_dynfilt.pruning.rules.keras_layers import (
    NormalizationOverChannelsRule,
    PassThrough,
    _check_activation,
    _last_axis,
)

L = keras.layers

# The query / value / key input positions of each attention layer, as read
# from its Keras node (the order of `node.input_tensors` depends on how the
# call passed them).
_ROLES = weakref.WeakKeyDictionary()
# Whether each normalisation layer normalises the channel axis alone.
_OVER_CHANNELS = weakref.WeakKeyDictionary()


def _prod(dims):
    return math.prod(int(d) for d in dims)


def _roles(node):
    """Positions of query, value and key in `node.input_tensors`."""
    args, kwargs = node.arguments.args, node.arguments.kwargs
    names = ("query", "value", "key")
    found = {}
    for i, name in enumerate(names):
        tensor = args[i] if len(args) > i else kwargs.get(name)
        if tensor is not None:
            found[name] = tensor
    found.setdefault("key", found.get("value"))
    positions = {}
    for name, tensor in found.items():
        for i, t in enumerate(node.input_tensors):
            if t is tensor:
                positions[name] = i
                break
    if set(positions) != set(names):
        return None
    return positions["query"], positions["value"], positions["key"]


_UNKNOWN_INPUTS = "its query, key or value has unknown channels"


def _projected_inputs(ctx, layer, inputs):
    """The query, value and key slots of an attention layer's node (`None`
    when one is unknown), each fixed where it stays non-zero when removed:
    the projections' kernel rows read every channel."""
    roles = _roles(ctx.node)
    if roles is None or any(inputs[i].slots is None for i in roles):
        return None
    _ROLES[layer] = roles
    found = tuple(inputs[i].slots for i in roles)
    for slots in found:
        ctx.require_zero(slots)
    return found


def _projection(rows, heads, dims):
    """The axes of a `(channels, heads, dims)` projection kernel: its input
    rows are read, its heads and head dimensions are zeroed."""
    return [
        WeightAxis(0, rows, False),
        WeightAxis(1, heads, True),
        WeightAxis(2, dims, True),
    ]


class MultiHeadAttentionRule(ChannelRule):
    """`keras.layers.MultiHeadAttention`: heads, head dimensions, and its
    input and output channels.

    The query, key and value inputs are consumed like a `Dense` layer's
    (their channels are input rows of the projections), the output
    channels are produced like a `Dense` layer's (columns of the output
    projection). Masks (`attention_mask`, `query_mask`, ...,
    `use_causal_mask`) are untouched: they index positions, not channels.
    Groups, in this order: one of `num_heads` whole heads; one of the
    `value_dim` and one of the `key_dim` dimensions shared by every head
    (a single group when `key_dim == value_dim`: dimension `j` of queries,
    keys and values together; `head_dims=False` keeps the dimensions
    fixed); one of the output channels (coupled to whatever the output is
    added to).

    A layer returning its attention scores keeps all its heads (the scores
    have a head axis). A multi-axis `output_shape` keeps its output
    channels.
    """

    elementwise = True
    needs_input_slots = False

    def __init__(self, head_dims=True):
        self.head_dims = check_bool(head_dims, "head_dims")

    @staticmethod
    def _sizes(layer):
        variables = _variables(layer)
        _, heads, key_dim = variables["query/kernel"].shape
        value_dim = variables["value/kernel"].shape[-1]
        out_shape = tuple(variables["attention_output/kernel"].shape[2:])
        return heads, key_dim, value_dim, out_shape

    def propagate(self, ctx, layer, inputs, output_shapes):
        found = _projected_inputs(ctx, layer, inputs)
        if found is None:
            return ctx.barrier(layer, inputs, output_shapes, _UNKNOWN_INPUTS)
        q_in, v_in, k_in = found
        heads, key_dim, value_dim, out_shape = self._sizes(layer)
        filters = ctx.new_filters(
            layer, heads + value_dim + key_dim + out_shape[-1]
        )
        head_slots = filters[:heads]
        value_slots = filters[heads : heads + value_dim]
        key_slots = filters[heads + value_dim : heads + value_dim + key_dim]
        out = filters[heads + value_dim + key_dim :]
        if key_dim == value_dim:
            # Pruned apart, they would differ, and Keras's fused attention
            # (`ops.dot_product_attention` on JAX) needs them equal.
            ctx.couple(key_slots, value_slots)
        ctx.separate([head_slots, value_slots, key_slots, out])
        if not self.head_dims:
            ctx.fix(value_slots, "head dimensions are not pruned")
            ctx.fix(key_slots, "head dimensions are not pruned")
        if len(out_shape) > 1:
            ctx.fix(out, "a multi-axis output_shape")
        outputs = [out]
        if len(output_shapes) > 1:  # return_attention_scores=True
            ctx.fix(head_slots, "the attention scores have a head axis")
            scores = ctx.new_zeros(output_shapes[1][-1])
            ctx.fix(scores, "attention scores")
            outputs.append(scores)
        # Internal units after the outputs: heads, value and key dimensions,
        # then the query, value and key input slots.
        return outputs + [head_slots, value_slots, key_slots, q_in, v_in, k_in]

    def _internal(self, layer, slots):
        return slots[-6:]  # what `propagate` puts after the outputs

    def weights(self, layer, in_slots, out_slots):
        out = out_slots[0]
        heads, values, keys, q_in, v_in, k_in = self._internal(
            layer, out_slots
        )
        variables = _variables(layer)
        found = {
            "query/kernel": _projection(q_in, heads, keys),
            "key/kernel": _projection(k_in, heads, keys),
            "value/kernel": _projection(v_in, heads, values),
            "attention_output/kernel": [
                WeightAxis(0, heads, False),
                WeightAxis(1, values, False),
                WeightAxis(-1, out, True),
            ],
        }
        if "gate/kernel" in variables:
            found["gate/kernel"] = _projection(q_in, heads, values)
        for name, dims in (
            ("query", keys), ("key", keys), ("value", values),
            ("gate", values),
        ):
            if f"{name}/bias" in variables:
                found[f"{name}/bias"] = [
                    WeightAxis(0, heads, True),
                    WeightAxis(1, dims, True),
                ]
        if "attention_output/bias" in variables:
            found["attention_output/bias"] = [WeightAxis(-1, out, True)]
        return found

    def compact_config(self, layer, config, keep_in, keep_out):
        heads, values, keys, q_in, _, _ = self._internal(layer, keep_out)
        config = dict(config)
        config["num_heads"] = int(heads.sum())
        config["key_dim"] = int(keys.sum())
        config["value_dim"] = int(values.sum())
        width = int(keep_out[0].sum())
        if config.get("output_shape") or width != int(q_in.sum()):
            shape = list(config.get("output_shape") or [len(keep_out[0])])
            shape[-1] = width
            config["output_shape"] = tuple(shape)
        return config

    def compact_weights(self, layer, values, keep_in, keep_out):
        """Keeps the logit scale: `q . k / sqrt(key_dim)` with fewer key
        dimensions is `q' . k / sqrt(new_key_dim)` for
        `q' = q * sqrt(new_key_dim / key_dim)`."""
        keys = self._internal(layer, keep_out)[2]
        kept = int(keys.sum())
        if kept == len(keys):
            return values
        factor = math.sqrt(kept / len(keys))
        values = dict(values)
        for name in ("query/kernel", "query/bias"):
            if name in values:
                values[name] = keras.ops.convert_to_numpy(values[name]) * factor
        return values

    def filter_matrix(self, layer):
        """Rows: heads, value dimensions, key dimensions, output channels
        (each the parameters it owns, zero-padded to one width)."""
        v = {
            k: keras.ops.convert_to_numpy(x.value)
            for k, x in _variables(layer).items()
        }
        heads, key_dim, value_dim, out_shape = self._sizes(layer)
        out_kernel = v["attention_output/kernel"].reshape(
            heads, value_dim, -1
        )

        def rows(parts):
            return [np.concatenate([p.ravel() for p in row]) for row in parts]

        found = rows(
            [v["query/kernel"][:, h], v["key/kernel"][:, h],
             v["value/kernel"][:, h], out_kernel[h]]
            for h in range(heads)
        )
        found += rows(
            [v["value/kernel"][:, :, j], out_kernel[:, j]]
            for j in range(value_dim)
        )
        found += rows(
            [v["query/kernel"][:, :, j], v["key/kernel"][:, :, j]]
            for j in range(key_dim)
        )
        found += rows([out_kernel[..., c]] for c in range(out_kernel.shape[-1]))
        width = max(len(r) for r in found)
        return np.stack([np.pad(r, (0, width - len(r))) for r in found])

    def filter_kernel_positions(self, layer):
        heads, key_dim, value_dim, out_shape = self._sizes(layer)
        start_v, start_k = heads, heads + value_dim
        start_o = heads + value_dim + key_dim
        h = np.arange(heads)
        found = [
            ("query/kernel", 1, h), ("key/kernel", 1, h),
            ("value/kernel", 1, h),
            ("value/kernel", 2, start_v + np.arange(value_dim)),
            ("query/kernel", 2, start_k + np.arange(key_dim)),
            ("key/kernel", 2, start_k + np.arange(key_dim)),
            ("attention_output/kernel", 2,
             start_o + np.arange(out_shape[-1])),
        ]
        return found

    def macs(self, layer, input_shapes, output_shapes):
        """Projections, logits, the weighted sum and the output projection
        (plus the gate), for one sample."""
        heads, key_dim, value_dim, _ = self._sizes(layer)
        return self._macs(
            layer, input_shapes, output_shapes, heads, key_dim, value_dim
        )

    def compacted_macs(self, layer, input_shapes, output_shapes, keep_out):
        """`macs` with the kept heads and head dimensions."""
        heads, values, keys = self._internal(layer, keep_out)[:3]
        return self._macs(
            layer, input_shapes, output_shapes,
            int(heads.sum()), int(keys.sum()), int(values.sum()),
        )

    def _macs(self, layer, input_shapes, output_shapes, heads, key_dim,
              value_dim):
        q_i, v_i, k_i = _ROLES.get(layer, (0, 1, 1 if len(input_shapes) < 3
                                         else 2))
        q_shape, v_shape = input_shapes[q_i], input_shapes[v_i]
        k_shape = input_shapes[k_i] if k_i < len(input_shapes) else v_shape
        out_shape = output_shapes[0]
        rank = len(q_shape)
        axes = layer.attention_axes
        axes = (
            tuple(range(1, rank - 1)) if axes is None
            else tuple(a % rank for a in axes)
        )
        t_q = _prod(q_shape[1:-1])
        t_kv = _prod(v_shape[1:-1])
        attended_q = _prod(q_shape[a] for a in axes)
        attended_kv = _prod(v_shape[a] for a in axes)
        batch_like = t_q // attended_q
        out_width = _prod(out_shape[rank - 1 :])
        total = t_q * q_shape[-1] * heads * key_dim
        total += t_kv * k_shape[-1] * heads * key_dim
        total += t_kv * v_shape[-1] * heads * value_dim
        total += batch_like * heads * attended_q * attended_kv * (
            key_dim + value_dim
        )
        total += t_q * heads * value_dim * out_width
        if "gate/kernel" in _variables(layer):
            total += t_q * q_shape[-1] * heads * value_dim
        return total


class GroupedQueryAttentionRule(MultiHeadAttentionRule):
    """`keras.layers.GroupQueryAttention`: a key/value head and the
    `num_query_heads // num_key_value_heads` query heads that share it are
    one unit; head dimension `j` (of queries, keys and values: they share
    `head_dim`) is another, with the logit scale kept as for
    `MultiHeadAttention`. The layer's output has the query's width (it has
    no `output_shape`), so output channel `c` is coupled to query channel
    `c`. Compaction reduces `num_key_value_heads`, `num_query_heads` (by
    the same factor) and `head_dim`.
    """

    @staticmethod
    def _gqa_sizes(layer):
        variables = _variables(layer)
        _, query_heads, head_dim = variables["query/kernel"].shape
        kv_heads = variables["key/kernel"].shape[1]
        return query_heads, kv_heads, head_dim

    def propagate(self, ctx, layer, inputs, output_shapes):
        found = _projected_inputs(ctx, layer, inputs)
        if found is None:
            return ctx.barrier(layer, inputs, output_shapes, _UNKNOWN_INPUTS)
        q_in, v_in, k_in = found
        query_heads, kv_heads, head_dim = self._gqa_sizes(layer)
        filters = ctx.new_filters(layer, kv_heads + head_dim + len(q_in))
        kv = filters[:kv_heads]
        dims = filters[kv_heads : kv_heads + head_dim]
        out = filters[kv_heads + head_dim :]
        ctx.couple(out, q_in)  # the output has the query's width
        ctx.separate([kv, dims])
        if not self.head_dims:
            ctx.fix(dims, "head dimensions are not pruned")
        outputs = [out]
        if len(output_shapes) > 1:
            ctx.fix(kv, "the attention scores have a head axis")
            scores = ctx.new_zeros(output_shapes[1][-1])
            ctx.fix(scores, "attention scores")
            outputs.append(scores)
        # `ops.repeat` on the heads axis: query head i reads kv head i // g.
        query_head_slots = np.repeat(kv, query_heads // kv_heads)
        return outputs + [query_head_slots, dims, dims, q_in, v_in, k_in, kv]

    def weights(self, layer, in_slots, out_slots):
        found = super().weights(layer, in_slots, out_slots[:-1])
        kv = out_slots[-1]
        for name in ("key", "value"):
            found[f"{name}/kernel"][1] = WeightAxis(1, kv, True)
            if f"{name}/bias" in found:
                found[f"{name}/bias"][0] = WeightAxis(0, kv, True)
        return found

    def compact_config(self, layer, config, keep_in, keep_out):
        query_heads, kv_heads, _ = self._gqa_sizes(layer)
        kv = int(keep_out[-1].sum())
        dims = self._internal(layer, keep_out[:-1])[1]
        return {
            **config,
            "num_key_value_heads": kv,
            "num_query_heads": kv * (query_heads // kv_heads),
            "head_dim": int(dims.sum()),
        }

    def compact_weights(self, layer, values, keep_in, keep_out):
        return super().compact_weights(layer, values, keep_in, keep_out[:-1])

    def filter_matrix(self, layer):
        """Rows: key/value heads (with their query heads), head
        dimensions, output channels (zero-padded to one width)."""
        v = {
            k: keras.ops.convert_to_numpy(x.value)
            for k, x in _variables(layer).items()
        }
        query_heads, kv_heads, head_dim = self._gqa_sizes(layer)
        g = query_heads // kv_heads
        out = v["attention_output/kernel"]
        rows = []
        for j in range(kv_heads):
            q = slice(j * g, (j + 1) * g)
            rows.append([v["query/kernel"][:, q], v["key/kernel"][:, j],
                         v["value/kernel"][:, j], out[q]])
        for d in range(head_dim):
            rows.append([v[f"{n}/kernel"][:, :, d]
                         for n in ("query", "key", "value")] + [out[:, d]])
        for c in range(out.shape[-1]):
            rows.append([out[..., c]])
        flat = [np.concatenate([p.ravel() for p in row]) for row in rows]
        width = max(len(r) for r in flat)
        return np.stack([np.pad(r, (0, width - len(r))) for r in flat])

    def filter_kernel_positions(self, layer):
        query_heads, kv_heads, head_dim = self._gqa_sizes(layer)
        kv = np.arange(kv_heads)
        dims = kv_heads + np.arange(head_dim)
        out = _variables(layer)["attention_output/kernel"].shape[-1]
        return [
            ("query/kernel", 1, np.repeat(kv, query_heads // kv_heads)),
            ("key/kernel", 1, kv), ("value/kernel", 1, kv),
            ("query/kernel", 2, dims), ("key/kernel", 2, dims),
            ("value/kernel", 2, dims),
            ("attention_output/kernel", 2,
             kv_heads + head_dim + np.arange(out)),
        ]

    def macs(self, layer, input_shapes, output_shapes):
        query_heads, kv_heads, head_dim = self._gqa_sizes(layer)
        return self._gqa_macs(
            layer, input_shapes, output_shapes, query_heads, kv_heads,
            head_dim,
        )

    def compacted_macs(self, layer, input_shapes, output_shapes, keep_out):
        """`macs` with the kept key/value heads (and their query heads)
        and head dimensions."""
        query_heads, kv_heads, _ = self._gqa_sizes(layer)
        kv = int(keep_out[-1].sum())
        dims = int(self._internal(layer, keep_out[:-1])[1].sum())
        return self._gqa_macs(
            layer, input_shapes, output_shapes,
            kv * (query_heads // kv_heads), kv, dims,
        )

    def _gqa_macs(self, layer, input_shapes, output_shapes, query_heads,
                  kv_heads, head_dim):
        q_i, v_i, k_i = _ROLES.get(
            layer, (0, 1, 1 if len(input_shapes) < 3 else 2)
        )
        q_shape, v_shape = input_shapes[q_i], input_shapes[v_i]
        k_shape = input_shapes[k_i] if k_i < len(input_shapes) else v_shape
        t_q, t_kv = _prod(q_shape[1:-1]), _prod(v_shape[1:-1])
        total = t_q * q_shape[-1] * query_heads * head_dim
        total += t_kv * (k_shape[-1] + v_shape[-1]) * kv_heads * head_dim
        total += 2 * query_heads * t_q * t_kv * head_dim
        total += t_q * query_heads * head_dim * output_shapes[0][-1]
        if "gate/kernel" in _variables(layer):
            total += t_q * q_shape[-1] * query_heads * head_dim
        return total


def _split_equation(equation):
    """`(input, kernel, output)` subscripts of an EinsumDense equation,
    or `None` when it is not `input,kernel->output`."""
    if "->" not in equation or equation.count(",") != 1:
        return None
    left, output = equation.split("->")
    x, kernel = left.split(",")
    return x.strip(), kernel.strip(), output.strip()


class EinsumDenseRule(ChannelRule):
    """`keras.layers.EinsumDense`: a consumer of the input axis its
    equation contracts and a producer of the output axis its kernel
    creates, when those are the last axes (`...b,bc->...c`,
    `abc,cd->abd`, `abc,cde->abde`, `abcd,cde->abe`, ...). Any other
    equation (a last axis passed through, broadcast or reordered) is a
    barrier.
    """

    elementwise = True

    def _axes(self, layer):
        """`(kernel input axis, kernel output axis, bias output axis)` or
        a reason why the equation does not map the last axes."""
        parts = _split_equation(layer.equation)
        if parts is None:
            return "an equation that is not `input,kernel->output`"
        x, kernel, out = parts
        if not x or not out or x[-1] == "." or out[-1] == ".":
            return "an equation without a named last axis"
        last_in, last_out = x[-1], out[-1]
        if last_in not in kernel or last_in in out:
            return "its input's last axis is not contracted with the kernel"
        if last_out not in kernel or last_out in x:
            return "its output's last axis does not come from the kernel"
        if kernel.count(last_in) != 1 or kernel.count(last_out) != 1:
            return "a repeated kernel subscript"
        bias_axis = None
        bias_axes = getattr(layer, "bias_axes", None)
        if bias_axes:
            if last_out not in bias_axes:
                return "a bias that does not follow the output's last axis"
            bias_axis = -1 if bias_axes[-1] == last_out else None
            if bias_axis is None:
                return "a bias whose last axis is not the output's last axis"
        return kernel.index(last_in), kernel.index(last_out), bias_axis

    def propagate(self, ctx, layer, inputs, output_shapes):
        axes = self._axes(layer)
        if isinstance(axes, str):
            return ctx.barrier(layer, inputs, output_shapes, axes)
        if len(inputs) != 1:
            return ctx.barrier(layer, inputs, output_shapes, "several inputs")
        ctx.require_zero(inputs[0].slots)
        _, out_axis, _ = axes
        out = ctx.new_filters(layer, layer.kernel.shape[out_axis])
        return _check_activation(ctx, layer, inputs, output_shapes, out)

    def weights(self, layer, in_slots, out_slots):
        in_axis, out_axis, bias_axis = self._axes(layer)
        found = {
            "kernel": [
                WeightAxis(in_axis, in_slots[0], False),
                WeightAxis(out_axis, out_slots[0], True),
            ]
        }
        if bias_axis is not None and "bias" in _variables(layer):
            found["bias"] = [WeightAxis(bias_axis, out_slots[0], True)]
        return found

    def compact_config(self, layer, config, keep_in, keep_out):
        shape = config["output_shape"]
        width = int(keep_out[0].sum())
        if isinstance(shape, int):
            shape = width
        else:
            shape = list(shape)
            shape[-1] = width
        return {**config, "output_shape": shape}

    def filter_kernel(self, layer):
        return ("kernel", self._axes(layer)[1])

    def macs(self, layer, input_shapes, output_shapes):
        """Output elements times the size of the contracted axes."""
        x, kernel, out = _split_equation(layer.equation)
        in_shape = input_shapes[0]
        # Subscripts from the right: `...` stands for the leading axes.
        sizes = {}
        for char, size in zip(reversed(x.replace("...", "")),
                              reversed(in_shape)):
            sizes[char] = size
        # Keras leaves free output axes of `output_shape=None` unknown.
        out_sizes = list(output_shapes[0][1:])
        out_chars = out.replace("...", "")
        for i in range(1, min(len(out_sizes), len(out_chars)) + 1):
            if out_sizes[-i] is None:
                out_sizes[-i] = sizes.get(out_chars[-i])
        contracted = [sizes.get(c) for c in kernel if c not in out]
        if any(d is None for d in out_sizes + contracted):
            return None
        return _prod(out_sizes) * _prod(contracted)


class NormalizationRule(NormalizationOverChannelsRule):
    """LayerNormalization and RMSNormalization over channels.

    Exact mode (the default): removing a channel changes the mean and the
    variance (or the RMS) of the others, so the input channels are held
    fixed. Inexact mode (`filter_groups(model, exact=False)`): the channel
    may be removed with its `gamma` (and `beta`) entries; masking zeroes
    them, so the masked channel is zero at the output, but the statistics
    of the compacted layer lose a channel: the function changes, and
    `compact` reports by how much.
    """

    #: Slicing its input channels changes the function (`compact` lists
    #: such layers in its `CompactionDifference`).
    inexact_when_sliced = True

    def _over_channels(self, layer, rank):
        axes = getattr(layer, "axis", -1)
        axes = axes if isinstance(axes, (list, tuple)) else [axes]
        return len(axes) == 1 and _last_axis(axes[0], rank)

    def propagate(self, ctx, layer, inputs, output_shapes):
        rank = len(output_shapes[0])
        _OVER_CHANNELS[layer] = self._over_channels(layer, rank)
        if ctx.exact or not _OVER_CHANNELS[layer]:
            return super().propagate(ctx, layer, inputs, output_shapes)
        slots = inputs[0].slots
        if len(inputs) != 1 or output_shapes[0][-1] != len(slots):
            return ctx.barrier(layer, inputs, output_shapes, "several inputs")
        # A removed input channel should be zero (its producers zeroed);
        # one that is not would still enter the statistics.
        ctx.require_zero(slots)
        if self._scaled(layer):
            return [ctx.with_live(slots, False)]
        # Without a scale, a zero input channel normalises to -mean / std.
        return [ctx.with_live(slots, True, "normalised without a scale")]

    @staticmethod
    def _scaled(layer):
        if isinstance(layer, L.LayerNormalization):
            return layer.scale or layer.rms_scaling
        return True  # RMSNormalization: x * scale / rms, 0 stays 0

    def weights(self, layer, in_slots, out_slots):
        if in_slots[0] is None or not _OVER_CHANNELS.get(layer, False):
            return {}
        found = {}
        for key, variable in _variables(layer).items():
            if variable.name in ("gamma", "beta", "scale"):
                found[key] = [WeightAxis(-1, in_slots[0], True)]
        return found


class ChannelWeightRule(PassThrough):
    """`ClassToken` and `PositionEmbedding`: channel `c` of the output is
    channel `c` of the input with entry `c` of the layer's weight (prepended
    or added). Masking zeroes the entry, so a removed channel stays zero;
    compaction slices it."""

    def __init__(self, weight):
        self.weight = weight

    def weights(self, layer, in_slots, out_slots):
        return {self.weight: [WeightAxis(-1, in_slots[0], True)]}

    def macs(self, layer, input_shapes, output_shapes):
        return 0  # a copy or an addition


def _register():
    register_channel_rule(L.MultiHeadAttention, MultiHeadAttentionRule())
    register_channel_rule(
        L.GroupQueryAttention, GroupedQueryAttentionRule()
    )
    register_channel_rule(L.EinsumDense, EinsumDenseRule())
    register_channel_rule(ClassToken, ChannelWeightRule("token"))
    register_channel_rule(PositionEmbedding, ChannelWeightRule("embedding"))
    norm = NormalizationRule()
    register_channel_rule(L.LayerNormalization, norm)
    if hasattr(L, "RMSNormalization"):
        register_channel_rule(L.RMSNormalization, norm)


_register()
