"""`GatedDecoderBlockRule` (keras-hub's Gemma and Llama decoder blocks) on
a small decoder block written here with Gemma's sublayer names, so that
the rule runs where keras-hub is not installed (CI). The keras-hub models
themselves are in test_zoo_keras_hub.py."""

import math

import keras
import numpy as np

from keras_dynfilt.pruning import (
    filter_groups,
    model_cost,
)
from keras_dynfilt.pruning.rules import base
from keras_dynfilt.pruning.rules.keras_hub import GatedDecoderBlockRule
from tests.pruning.zoo import mask_and_compact
from tests.random_weights import randomize

L = keras.layers


def rms_norm(name):
    if hasattr(L, "RMSNormalization"):  # Keras >= 3.9
        return L.RMSNormalization(name=name)
    return L.LayerNormalization(rms_scaling=True, name=name)


@keras.saving.register_keras_serializable(package="test_decoder_rule")
class MiniAttention(L.Layer):
    """Grouped-query attention with Gemma's kernel layouts."""

    def __init__(self, num_query_heads, num_key_value_heads, head_dim,
                 **kwargs):
        super().__init__(**kwargs)
        self.num_query_heads = num_query_heads
        self.num_key_value_heads = num_key_value_heads
        self.head_dim = head_dim

    def build(self, input_shape):
        d = input_shape[-1]
        n, k, h = self.num_query_heads, self.num_key_value_heads, self.head_dim
        self.query = L.EinsumDense("btd,ndh->btnh", (None, n, h), name="query")
        self.key = L.EinsumDense("btd,kdh->btkh", (None, k, h), name="key")
        self.value = L.EinsumDense("btd,kdh->btkh", (None, k, h), name="value")
        self.attention_output = L.EinsumDense(
            "btnh,nhd->btd", (None, d), name="attention_output"
        )
        for layer in (self.query, self.key, self.value):
            layer.build(input_shape)
        self.attention_output.build((None, None, n, h))

    def call(self, x):
        groups = self.num_query_heads // self.num_key_value_heads
        q = self.query(x) / math.sqrt(self.head_dim)
        k = keras.ops.repeat(self.key(x), groups, axis=2)
        v = keras.ops.repeat(self.value(x), groups, axis=2)
        weights = keras.ops.softmax(keras.ops.einsum("btnh,bsnh->bnts", q, k))
        return self.attention_output(
            keras.ops.einsum("bnts,bsnh->btnh", weights, v)
        )

    def get_config(self):
        return {**super().get_config(), "num_query_heads": self.num_query_heads,
                "num_key_value_heads": self.num_key_value_heads,
                "head_dim": self.head_dim}


@keras.saving.register_keras_serializable(package="test_decoder_rule")
class MiniDecoderBlock(L.Layer):
    """Pre-norm attention and a gated MLP, each with a residual."""

    def __init__(self, intermediate_dim, num_query_heads,
                 num_key_value_heads, head_dim, **kwargs):
        super().__init__(**kwargs)
        self.intermediate_dim = intermediate_dim
        self.num_query_heads = num_query_heads
        self.num_key_value_heads = num_key_value_heads
        self.head_dim = head_dim
        self.pre_attention_norm = rms_norm("pre_attention_norm")
        self.attention = MiniAttention(
            num_query_heads, num_key_value_heads, head_dim, name="attention")
        self.pre_ffw_norm = rms_norm("pre_ffw_norm")

    def build(self, input_shape):
        d = input_shape[-1]
        f = self.intermediate_dim // 2
        self.pre_attention_norm.build(input_shape)
        self.attention.build(input_shape)
        self.pre_ffw_norm.build(input_shape)
        self.gating_ffw = L.EinsumDense(
            "btd,df->btf", (None, f), name="ffw_gating")
        self.gating_ffw_2 = L.EinsumDense(
            "btd,df->btf", (None, f), name="ffw_gating_2")
        self.ffw_linear = L.EinsumDense(
            "btf,fd->btd", (None, d), name="ffw_linear")
        self.gating_ffw.build(input_shape)
        self.gating_ffw_2.build(input_shape)
        self.ffw_linear.build((None, None, f))

    def call(self, x):
        x = x + self.attention(self.pre_attention_norm(x))
        h = self.pre_ffw_norm(x)
        gated = keras.activations.gelu(self.gating_ffw(h), approximate=True)
        return x + self.ffw_linear(gated * self.gating_ffw_2(h))

    def get_config(self):
        return {**super().get_config(),
                "intermediate_dim": self.intermediate_dim,
                "num_query_heads": self.num_query_heads,
                "num_key_value_heads": self.num_key_value_heads,
                "head_dim": self.head_dim}


def decoder_model():
    inputs = keras.Input((None,), dtype="int32")
    x = L.Embedding(50, 16, name="embed")(inputs)
    for i in range(2):
        x = MiniDecoderBlock(32, 4, 2, 4, name=f"block{i}")(x)
    return keras.Model(inputs, L.Dense(50, name="logits")(x))


def test_decoder_block_rule_prunes_heads_and_mlp_widths_exactly():
    path = f"{__name__}.MiniDecoderBlock"
    base.register_by_path(path, lambda: GatedDecoderBlockRule(
        "attention", 0, "ffw_gating", "ffw_gating_2", "ffw_linear",
        intermediate=2, heads=True,
    ))
    try:
        model = decoder_model()
        randomize(model, 0)
        groups = filter_groups(model, warn=False)
        # Per block: 2 key/value heads (2 query heads each), 16 MLP units.
        assert sorted(g.size for g in groups) == [2, 2, 16, 16]
        x = np.random.default_rng(1).integers(0, 50, (3, 7)).astype("int32")
        keeps = {}
        for group in groups:
            keeps[group] = np.ones(group.size, bool)
            keeps[group][1::2] = False
        small, _ = mask_and_compact(model, x, keeps)
        block = small.get_layer("block0")
        assert (block.num_key_value_heads, block.num_query_heads) == (1, 2)
        assert block.intermediate_dim == 16
        shape = (7,)
        priced = model_cost(model, shape, compacted=True, warn=False)
        actual = model_cost(small, shape, warn=False)
        assert priced.complete and actual.complete
        assert priced.macs == actual.macs
        assert actual.macs < model_cost(model, shape, warn=False).macs
    finally:
        del base._BY_PATH[path]
        base._REGISTRY.pop(MiniDecoderBlock, None)


@keras.saving.register_keras_serializable(package="test_decoder_rule")
class MiniMlp(L.Layer):
    def __init__(self, hidden, out, **kwargs):
        super().__init__(**kwargs)
        self.hidden, self.out = hidden, out
        self.fc1 = L.Dense(hidden, name="fc1")
        self.fc2 = L.Dense(out, name="fc2")

    def call(self, x):
        return self.fc2(keras.activations.gelu(self.fc1(x)))

    def get_config(self):
        return {**super().get_config(), "hidden": self.hidden, "out": self.out}


@keras.saving.register_keras_serializable(package="test_decoder_rule")
class MiniSwinBlock(L.Layer):
    """Swin's block layout: its MLP width is `int(dim * mlp_ratio)`."""

    def __init__(self, dim, mlp_ratio, **kwargs):
        super().__init__(**kwargs)
        self.dim, self.mlp_ratio = dim, mlp_ratio
        self.norm1 = L.LayerNormalization(name="norm1")
        self.attn = L.MultiHeadAttention(2, dim // 2, name="attn")
        self.norm2 = L.LayerNormalization(name="norm2")
        self.mlp = MiniMlp(int(dim * mlp_ratio), dim, name="mlp")

    def call(self, x):
        h = self.norm1(x)
        x = x + self.attn(h, h)
        return x + self.mlp(self.norm2(x))

    def get_config(self):
        return {**super().get_config(), "dim": self.dim,
                "mlp_ratio": self.mlp_ratio}


def test_residual_mlp_block_rule_prunes_mlp_widths_exactly():
    from keras_dynfilt.pruning.rules.keras_hub import (
        ResidualMLPBlockRule,
        _swin_width,
    )

    path = f"{__name__}.MiniSwinBlock"
    base.register_by_path(path, lambda: ResidualMLPBlockRule(
        "mlp/fc1", "mlp/fc2", _swin_width))
    try:
        inputs = keras.Input((6, 12))
        x = L.Dense(12, name="embed")(inputs)
        x = MiniSwinBlock(12, 3.0, name="block")(x)
        model = keras.Model(inputs, L.Dense(3, name="head")(x))
        randomize(model, 0)
        (group,) = filter_groups(model, warn=False)
        assert group.size == 36
        x = np.random.default_rng(1).normal(size=(3, 6, 12))
        x = x.astype("float32")
        keep = np.ones(36, bool)
        keep[::3] = False  # 24 kept: 12 * (24.5 / 12) must give 24
        small, _ = mask_and_compact(model, x, {group: keep})
        assert small.get_layer("block").mlp.fc1.units == 24
        priced = model_cost(model, compacted=True, warn=False)
        assert priced.macs == model_cost(small, warn=False).macs
    finally:
        del base._BY_PATH[path]
        base._REGISTRY.pop(MiniSwinBlock, None)
