"""Transformer blocks written as custom layers, traced and pruned: the
defects keras-hub's encoders and decoders found in the engine, each on a
small model of this file (keras-hub itself is not needed)."""

import warnings

import keras
import numpy as np

from keras_dynfilt.pruning import compact, filter_groups
from keras_dynfilt.pruning.rules.base import _variables
from tests.pruning import zoo

L = keras.layers


class NamedLikeItsAttention(L.Layer):
    """DINOv2's pattern: a layer named `attention` holding a
    `MultiHeadAttention` also named `attention`, so the variable paths
    read `.../attention/attention/query/kernel`."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.attention = L.MultiHeadAttention(2, 4, name="attention")

    def call(self, x):
        return self.attention(x, x)


def repeated_name_model():
    inputs = keras.Input((6, 8))
    x = L.Dense(8, name="embed")(inputs)
    x = NamedLikeItsAttention(name="attention")(x)
    x = L.Dense(16, activation="relu", name="fc1")(x)
    return keras.Model(inputs, L.Dense(3, name="head")(x))


def test_variables_are_keyed_below_the_layer_not_at_the_first_name():
    model = repeated_name_model()
    outer = model.get_layer("attention")
    inner = outer.attention
    assert inner.weights[0].path.endswith("attention/attention/query/kernel")
    keys = list(_variables(inner))
    assert keys[:2] == ["query/kernel", "query/bias"]
    assert "attention_output/kernel" in keys
    # The outer layer keys them by the sublayer that owns them.
    assert list(_variables(outer))[0] == "attention/query/kernel"


def test_a_sublayer_named_like_its_parent_is_pruned(tmp_path):
    model = repeated_name_model()
    groups = filter_groups(model, warn=False)  # was KeyError: 'query/kernel'
    assert not groups.barriers
    assert any(g.layers[0] == "attention/attention" for g in groups)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        small = zoo.check_four(model, tmp_path, min_groups=3)
    assert small.get_layer("attention").get_layer("attention").num_heads < 2 \
        or small.get_layer("attention").get_layer("attention").key_dim < 4


def _attention_model(layer):
    inputs = keras.Input((6, 8))
    x = L.Dense(8, name="embed")(inputs)
    x = layer(x, x)
    x = L.Dense(16, activation="relu", name="fc1")(x)
    return keras.Model(inputs, L.Dense(3, name="head")(x))


def _mask_internal(model, name, fraction=0.5, seed=0):
    """Masks part of every group of the attention layer `name` (heads,
    head dimensions, outputs)."""
    from keras_dynfilt.pruning import apply_group_mask

    rng = np.random.default_rng(seed)
    zoo.randomize(model, seed=seed)
    masked = 0
    for group in filter_groups(model, warn=False):
        if group.layers != (name,):
            continue
        keep = np.ones(group.size, bool)
        n = max(1, int(group.size * fraction))
        keep[rng.permutation(group.size)[:n]] = False
        apply_group_mask(group, keep)
        masked += 1
    assert masked >= 2  # heads and head dimensions at least
    return model


def _check_compacted_cost(model):
    from keras_dynfilt.pruning import model_cost

    priced = model_cost(model, compacted=True, warn=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        small = compact(model)
    actual = model_cost(small, warn=False)
    assert priced.macs == actual.macs
    assert priced.params == actual.params == small.count_params()
    assert priced.macs < model_cost(model, warn=False).macs
    return small


def test_masked_heads_are_priced_as_removed():
    model = _mask_internal(_attention_model(
        L.MultiHeadAttention(4, 4, value_dim=3, name="mha")), "mha")
    small = _check_compacted_cost(model)
    layer = small.get_layer("mha")
    assert layer.num_heads == 2 and layer.value_dim < 3 and layer.key_dim < 4


def test_masked_grouped_query_heads_are_priced_as_removed():
    model = _mask_internal(_attention_model(
        L.GroupQueryAttention(4, num_query_heads=4, num_key_value_heads=2,
                              name="gqa")), "gqa")
    small = _check_compacted_cost(model)
    layer = small.get_layer("gqa")
    assert layer.num_key_value_heads == 1 and layer.num_query_heads == 2


class DropPath(L.Layer):
    """keras-hub's `DropPath`: the input itself outside training."""

    def call(self, x, training=None):
        if not training:
            return x
        return x * 2.0


class MixFFN(L.Layer):
    """SegFormer's MLP: tokens reshaped to an image by the batch size read
    from `ops.shape` (`None` on symbolic inputs) and back with `-1`."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.fc1 = L.Dense(16, name="fc1")
        self.dwconv = L.DepthwiseConv2D(3, padding="same", name="dwconv")
        self.fc2 = L.Dense(8, name="fc2")

    def call(self, x):
        x = self.fc1(x)
        shape = keras.ops.shape(x)
        batch, channels = shape[0], shape[2]
        x = keras.ops.reshape(x, (batch, 2, 2, channels))
        x = self.dwconv(x)
        x = keras.ops.reshape(x, (batch, -1, channels))
        return self.fc2(keras.ops.nn.gelu(x))


class MiTLikeBlock(L.Layer):
    """MiT's encoder block: one `DropPath` called twice, on a tensor of
    static length and on one whose length the reshape left unknown."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.attn = L.Dense(8, name="attn")
        self.mlp = MixFFN(name="mlp")
        self.drop_path = DropPath(name="drop_path")

    def call(self, x):
        x = x + self.drop_path(self.attn(x))
        return x + self.drop_path(self.mlp(x))


def mit_like_model():
    inputs = keras.Input((4, 8))
    x = L.Dense(8, name="embed")(inputs)
    x = MiTLikeBlock(name="block")(x)
    return keras.Model(inputs, L.Dense(3, name="head")(x))


def test_a_pass_through_block_called_on_two_shapes_makes_no_cycle(tmp_path):
    model = mit_like_model()
    # Was: ValueError "... from operation 'drop_path' is part of a cycle"
    groups = filter_groups(model, warn=False)
    assert not groups.barriers
    assert sorted(g.size for g in groups) == [8, 16]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        small = zoo.check_four(model, tmp_path, min_groups=2)
    # The reshapes by the batch size run on any batch (-1 written in).
    x = np.random.default_rng(0).normal(size=(5, 4, 8)).astype("float32")
    assert np.allclose(zoo.run(model, x), zoo.run(small, x), atol=1e-5)


class TwoUnknowns(L.Layer):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.fc = L.Dense(8)

    def call(self, x):
        shape = keras.ops.shape(x)
        x = keras.ops.reshape(x, (shape[0], shape[1], 2, 4))
        return self.fc(keras.ops.reshape(x, (shape[0], shape[1], 8)))


def test_a_reshape_by_two_symbolic_sizes_is_refused_naming_it():
    inputs = keras.Input((None, 8))
    x = TwoUnknowns(name="two")(L.Dense(8, name="embed")(inputs))
    model = keras.Model(inputs, L.Dense(3, name="head")(x))
    groups = filter_groups(model, warn=False)
    (barrier,) = groups.barriers
    assert barrier.class_name == "TwoUnknowns"
    assert "Cannot trace layer 'two' (TwoUnknowns)" in str(barrier.reason)
    assert "`ops.reshape`" in str(barrier.reason)
    assert "no single `-1`" in str(barrier.reason)


class KeepsItsInput(L.Layer):
    """Returns its input unchanged next to a computed tensor."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.fc = L.Dense(8, name="fc")

    def call(self, x):
        return x, self.fc(x)


class Unknown(L.Layer):
    """Leaves the token count unknown (`(B, -1, C)` by the batch size)."""

    def call(self, x):
        return keras.ops.reshape(x, (keras.ops.shape(x)[0], -1, 8))


def test_a_block_returning_its_input_with_another_output(tmp_path):
    inputs = keras.Input((4, 8))
    x = L.Dense(8, name="embed")(inputs)
    keep = KeepsItsInput(name="keep")  # called on (4, 8) and (None, 8)
    same, new = keep(x)
    x = Unknown(name="unknown")(L.Add()([same, new]))
    same, new = keep(L.Dense(8, name="mid")(x))
    model = keras.Model(inputs, L.Dense(3, name="head")(same + new))
    groups = filter_groups(model, warn=False)
    assert not groups.barriers
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        zoo.check_four(model, tmp_path)


class RegisteredByPath(L.Layer):
    def call(self, x):
        return keras.ops.relu(x)


def test_a_rule_registered_by_class_path_is_found_on_first_sight():
    from keras_dynfilt.pruning.rules import base
    from keras_dynfilt.pruning.rules.keras_layers import PassThrough
    from keras_dynfilt.pruning.tracing import is_traceable

    layer = RegisteredByPath()
    assert base.get_channel_rule(layer) is None and is_traceable(layer)
    path = f"{__name__}.RegisteredByPath"
    rule = PassThrough()
    base.register_by_path(path, lambda: rule)
    try:
        assert base.get_channel_rule(layer) is rule
        assert not is_traceable(layer)  # a rule: never traced
    finally:
        del base._BY_PATH[path]
        base._REGISTRY.pop(RegisteredByPath, None)
