"""Channel rules for keras-hub's decoder blocks (Gemma, Llama).

keras-hub's decoder blocks cannot be traced: they build their causal mask
with `ops.arange` on the sequence length, which is `None` on symbolic
inputs, and a Keras functional graph has no op for a length known only at
run time. These rules treat each block as one layer instead:

- the residual stream (the block's input and output channels) passes
  through and is held: the block normalises it (RMSNorm) before attention
  and before the MLP, and the exact engine never removes a normalised
  channel;
- **MLP widths** (`intermediate_dim`): unit `f` is column `f` of the gate
  and up projections and row `f` of the down projection. Masked, both
  columns are zero, so `act(0) * 0 = 0` and the unit adds nothing;
- **key/value heads** (Gemma, whose config has its own `head_dim`): key /
  value head `j` and the `num_query_heads // num_key_value_heads` query
  heads that read it are one unit. Masked, its queries, keys and values
  are zero, so whatever its attention weights, the heads contribute zero
  (their output-projection rows are sliced away on compaction). Llama
  derives `head_dim` from `hidden_dim // num_query_heads`, so its heads
  stay fixed: fewer heads would make wider ones.

Head dimensions are not pruned (the rotary embedding pairs them).

keras-hub is never imported here: the rules are registered by class path
(`register_by_path`) and looked up when a layer of that class is met.
"""

import math

import keras
import numpy as np

from keras_dynfilt.pruning.rules.base import (
    ChannelRule,
    WeightAxis,
    _variables,
    held_slots,
    register_by_path,
)

_HELD = "the block normalises its residual stream (RMSNorm; exact mode)"


def _prod(dims):
    return math.prod(int(d) for d in dims)


class GatedDecoderBlockRule(ChannelRule):
    """A keras-hub decoder block: attention, then a gated MLP, each with a
    residual connection (see the module docstring).

    Args:
        attention: Name of the attention sublayer.
        heads_axis: Axis of the heads in the query/key/value kernels.
        gate, up, down: Names of the MLP's gate, up and down projections.
        intermediate: What `intermediate_dim` counts, in MLP units: 1 for
            Llama, 2 for Gemma (whose two gating projections each have
            `intermediate_dim // 2` units).
        heads: Whether key/value heads are prunable (the config has its
            own `head_dim`).
    """

    elementwise = True
    needs_input_slots = False

    def __init__(self, attention, heads_axis, gate, up, down, intermediate,
                 heads):
        self.attention = attention
        self.heads_axis = heads_axis
        self.gate, self.up, self.down = gate, up, down
        self.intermediate = intermediate
        self.heads = heads

    def _kernel(self, layer, name):
        return _variables(layer)[f"{name}/kernel"]

    def _sizes(self, layer):
        query = self._kernel(layer, f"{self.attention}/query")
        key = self._kernel(layer, f"{self.attention}/key")
        q_heads = query.shape[self.heads_axis]
        kv_heads = key.shape[self.heads_axis]
        head_dim = query.shape[-1]
        width = self._kernel(layer, self.gate).shape[-1]
        return q_heads, kv_heads, head_dim, width

    def propagate(self, ctx, layer, inputs, output_shapes):
        stream = inputs[0].slots
        if stream is None:
            stream = held_slots(ctx, output_shapes[0], _HELD)
        if stream is None:
            return ctx.barrier(
                layer, inputs, output_shapes, "its input has no channel axis"
            )
        ctx.fix(stream, _HELD)
        for extra in inputs[1:]:  # padding masks: positions, not channels
            ctx.fix(extra.slots, "a padding mask")
        _, kv_heads, _, width = self._sizes(layer)
        filters = ctx.new_filters(layer, kv_heads + width)
        kv, mlp = filters[:kv_heads], filters[kv_heads:]
        ctx.separate([kv, mlp])
        if not self.heads:
            ctx.fix(kv, "head_dim is hidden_dim // num_query_heads")
        outputs = [stream]
        for shape in output_shapes[1:]:
            outputs.append(held_slots(ctx, shape, "a cache"))
        return outputs + [kv, mlp]

    def _query_heads(self, layer, kv):
        q_heads, kv_heads, _, _ = self._sizes(layer)
        return np.repeat(kv, q_heads // kv_heads)

    def weights(self, layer, in_slots, out_slots):
        kv, mlp = out_slots[-2], out_slots[-1]
        q = self._query_heads(layer, kv)
        a = self.attention
        found = {
            f"{a}/query/kernel": [WeightAxis(self.heads_axis, q, True)],
            f"{a}/key/kernel": [WeightAxis(self.heads_axis, kv, True)],
            f"{a}/value/kernel": [WeightAxis(self.heads_axis, kv, True)],
            f"{a}/attention_output/kernel": [WeightAxis(0, q, False)],
            f"{self.gate}/kernel": [WeightAxis(-1, mlp, True)],
            f"{self.up}/kernel": [WeightAxis(-1, mlp, True)],
            f"{self.down}/kernel": [WeightAxis(0, mlp, False)],
        }
        variables = _variables(layer)
        for name in (self.gate, self.up):
            if f"{name}/bias" in variables:
                found[f"{name}/bias"] = [WeightAxis(-1, mlp, True)]
        return found

    def compact_config(self, layer, config, keep_in, keep_out):
        q_heads, kv_heads, _, _ = self._sizes(layer)
        kv = int(keep_out[-2].sum())
        return {
            **config,
            "num_query_heads": kv * (q_heads // kv_heads),
            "num_key_value_heads": kv,
            "intermediate_dim": self.intermediate * int(keep_out[-1].sum()),
        }

    def filter_matrix(self, layer):
        """Rows: key/value heads (with their query heads' parameters), then
        MLP units (zero-padded to one width)."""
        v = {
            k: keras.ops.convert_to_numpy(x.value)
            for k, x in _variables(layer).items()
        }
        a, axis = self.attention, self.heads_axis
        q_heads, kv_heads, _, width = self._sizes(layer)
        g = q_heads // kv_heads
        rows = []
        for j in range(kv_heads):
            q = np.arange(j * g, (j + 1) * g)
            rows.append([
                np.take(v[f"{a}/query/kernel"], q, axis),
                np.take(v[f"{a}/key/kernel"], [j], axis),
                np.take(v[f"{a}/value/kernel"], [j], axis),
                v[f"{a}/attention_output/kernel"][q],
            ])
        for f in range(width):
            rows.append([
                v[f"{self.gate}/kernel"][..., f],
                v[f"{self.up}/kernel"][..., f], v[f"{self.down}/kernel"][f],
            ])
        flat = [np.concatenate([p.ravel() for p in row]) for row in rows]
        size = max(len(r) for r in flat)
        return np.stack([np.pad(r, (0, size - len(r))) for r in flat])

    def filter_kernel_positions(self, layer):
        q_heads, kv_heads, _, width = self._sizes(layer)
        a, kv = self.attention, np.arange(kv_heads)
        mlp = kv_heads + np.arange(width)
        return [
            (f"{a}/query/kernel", self.heads_axis,
             np.repeat(kv, q_heads // kv_heads)),
            (f"{a}/key/kernel", self.heads_axis, kv),
            (f"{a}/value/kernel", self.heads_axis, kv),
            (f"{self.gate}/kernel", 1, mlp),
            (f"{self.up}/kernel", 1, mlp),
        ]

    def macs(self, layer, input_shapes, output_shapes):
        q_heads, kv_heads, _, width = self._sizes(layer)
        return self._macs(layer, input_shapes, q_heads, kv_heads, width)

    def compacted_macs(self, layer, input_shapes, output_shapes, keep_out):
        q_heads, kv_heads, _, _ = self._sizes(layer)
        kv = int(keep_out[-2].sum())
        return self._macs(
            layer, input_shapes, kv * (q_heads // kv_heads), kv,
            int(keep_out[-1].sum()),
        )

    def _macs(self, layer, input_shapes, q_heads, kv_heads, width):
        """Projections, logits, the weighted sum, the output projection,
        the gated MLP and the normalisations, for one sample."""
        shape = input_shapes[0]
        if any(d is None for d in shape[1:]):
            return None
        tokens, hidden = _prod(shape[1:-1]), shape[-1]
        head_dim = self._sizes(layer)[2]
        total = tokens * hidden * (q_heads + 2 * kv_heads) * head_dim
        total += 2 * q_heads * tokens * tokens * head_dim
        total += tokens * q_heads * head_dim * hidden
        total += 3 * tokens * hidden * width
        norms = sum(k.endswith("/scale") for k in _variables(layer))
        total += norms * tokens * hidden  # one multiply-add per element
        return total


class ResidualMLPBlockRule(ChannelRule):
    """A keras-hub transformer block whose MLP widths are its only units
    (Swin's `SwinTransformerBlock`: its heads set its head width, `dim //
    num_heads`, so they stay fixed). The residual stream is held (the block
    normalises it); MLP unit `f` is column `f` of the up projection (and
    its bias: `act(0) = 0` for GELU) and row `f` of the down projection.

    Args:
        up, down: Names (keys below the block) of the MLP's two layers.
        width_config: `fn(config, kept)`, the block's config with `kept`
            MLP units.
    """

    elementwise = True
    needs_input_slots = False

    def __init__(self, up, down, width_config):
        self.up, self.down = up, down
        self.width_config = width_config

    def _width(self, layer):
        return _variables(layer)[f"{self.up}/kernel"].shape[-1]

    def propagate(self, ctx, layer, inputs, output_shapes):
        stream = inputs[0].slots
        if stream is None:
            stream = held_slots(ctx, output_shapes[0], _HELD)
        if stream is None or len(inputs) != 1:
            return ctx.barrier(
                layer, inputs, output_shapes, "not one input with channels"
            )
        ctx.fix(stream, _HELD)
        return [stream, ctx.new_filters(layer, self._width(layer))]

    def weights(self, layer, in_slots, out_slots):
        mlp = out_slots[-1]
        found = {
            f"{self.up}/kernel": [WeightAxis(-1, mlp, True)],
            f"{self.down}/kernel": [WeightAxis(0, mlp, False)],
        }
        if f"{self.up}/bias" in _variables(layer):
            found[f"{self.up}/bias"] = [WeightAxis(-1, mlp, True)]
        return found

    def compact_config(self, layer, config, keep_in, keep_out):
        return self.width_config(config, int(keep_out[-1].sum()))

    def filter_kernel(self, layer):
        return (f"{self.up}/kernel", 1)

    def macs(self, layer, input_shapes, output_shapes):
        return self._macs(layer, input_shapes, self._width(layer))

    def compacted_macs(self, layer, input_shapes, output_shapes, keep_out):
        return self._macs(layer, input_shapes, int(keep_out[-1].sum()))

    def _macs(self, layer, input_shapes, width):
        """Every kernel applied to every token (the attention's own
        projections included), the MLP at `width`, and each token attending
        to the tokens of its window."""
        shape = input_shapes[0]
        if any(d is None for d in shape[1:]):
            return None
        tokens, dim = _prod(shape[1:-1]), shape[-1]
        total = 0
        for key, v in _variables(layer).items():
            if key.endswith("/kernel") and key not in (
                f"{self.up}/kernel", f"{self.down}/kernel",
            ):
                total += tokens * _prod(v.shape)
        total += 2 * tokens * dim * width
        window = getattr(layer, "window_size", None) or 1
        total += 2 * tokens * window * window * dim  # logits, weighted sum
        norms = sum(k.endswith("/gamma") for k in _variables(layer))
        return total + norms * tokens * dim


def _swin_width(config, kept):
    # `int(dim * mlp_ratio)` must come out `kept`: half a unit above it,
    # so that no rounding of the ratio truncates it to `kept - 1`.
    return {**config, "mlp_ratio": (kept + 0.5) / config["dim"]}


def _register():
    register_by_path(
        "keras_hub.src.models.gemma.gemma_decoder_block.GemmaDecoderBlock",
        lambda: GatedDecoderBlockRule(
            "attention", 0, "ffw_gating", "ffw_gating_2", "ffw_linear",
            intermediate=2, heads=True,
        ),
    )
    register_by_path(
        "keras_hub.src.models.llama.llama_decoder.LlamaTransformerDecoder",
        lambda: GatedDecoderBlockRule(
            "self_attention", 1, "feedforward_gate_dense",
            "feedforward_intermediate_dense", "feedforward_output_dense",
            intermediate=1, heads=False,
        ),
    )
    register_by_path(
        "keras_hub.src.models.swin_transformer.swin_transformer_layers."
        "SwinTransformerBlock",
        lambda: ResidualMLPBlockRule("mlp/fc1", "mlp/fc2", _swin_width),
    )


_register()
