"""Attention heads, head dimensions, EinsumDense and the inexact mode."""

import warnings

import keras
import numpy as np
import pytest

import keras_dynfilt
from keras_dynfilt.pruning import (
    apply_group_mask,
    compact,
    filter_groups,
    model_cost,
)
from keras_dynfilt.pruning.rules.transformers import MultiHeadAttentionRule

L = keras.layers


def randomize(model, seed=0):
    rng = np.random.default_rng(seed)
    for w in model.weights:
        shape = tuple(w.shape)
        if w.name in ("gamma", "beta", "bias", "token", "embedding"):
            value = rng.normal(0.3, 0.5, shape)
        else:
            fan_in = int(np.prod(shape[:-1])) if len(shape) > 1 else 1
            value = rng.normal(0.0, 1.0 / np.sqrt(fan_in), shape)
        w.assign(value.astype(w.dtype))
    return model


def numpy(x):
    return keras.ops.convert_to_numpy(x)


def attention_groups(groups, layer):
    """The attention layer's groups by kind: heads, value dims (with the
    key dims when coupled), key dims, output channels."""
    found = {}
    kinds = ["heads", "value_dims", "key_dims", "outputs"]
    bounds = np.cumsum([layer.num_heads, layer.value_dim, layer.key_dim])
    for group in groups:
        if group.layers != (layer.name,):
            continue
        first = group.units[0][0][1]
        found[kinds[int(np.searchsorted(bounds, first, side="right"))]] = group
    return found


def drop(group, indices):
    keep = np.ones(group.size, bool)
    keep[list(indices)] = False
    apply_group_mask(group, keep)


def self_attention_model(dtype="float32", key_dim=3, value_dim=3):
    inputs = keras.Input((6, 5), dtype=dtype)
    x = L.Dense(8, name="embed", dtype=dtype)(inputs)
    x = L.MultiHeadAttention(
        4, key_dim=key_dim, value_dim=value_dim, name="mha", dtype=dtype
    )(x, x)
    x = L.Dense(6, activation="relu", name="fc", dtype=dtype)(x)
    outputs = L.Dense(2, name="head", dtype=dtype)(x)
    return keras.Model(inputs, outputs)


def check_equal(model, small, x, dtype):
    a, b = numpy(model(x)), numpy(small(x))
    # JAX without x64 computes float64 models in float32.
    tol = 1e-10 if a.dtype == np.float64 else 2e-5
    np.testing.assert_allclose(a, b, rtol=tol, atol=tol)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_heads_and_dims_masked_equals_compacted(dtype):
    model = randomize(self_attention_model(dtype))
    x = np.random.default_rng(1).normal(size=(3, 6, 5)).astype(dtype)
    full = numpy(model(x))
    groups = filter_groups(model, warn=False)
    mha = model.get_layer("mha")
    kinds = attention_groups(groups, mha)
    assert set(kinds) == {"heads", "value_dims", "outputs"}
    # Equal key and value widths: dimension j of q, k and v is one unit.
    assert kinds["value_dims"].size == 3
    assert len(kinds["value_dims"].units[0]) == 2
    drop(kinds["heads"], [1, 3])
    drop(kinds["value_dims"], [2])
    masked = numpy(model(x))
    assert np.abs(masked - full).max() > 1e-3  # the masking did something
    small = compact(model)
    config = small.get_layer("mha").get_config()
    assert (config["num_heads"], config["value_dim"], config["key_dim"]) == (
        2, 2, 2,
    )
    check_equal(model, small, x, dtype)


# JAX's fused attention (Keras's path there) needs key_dim == value_dim.
@pytest.mark.tensorflow
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_value_and_key_dims_apart(dtype):
    model = randomize(self_attention_model(dtype, key_dim=3, value_dim=5))
    x = np.random.default_rng(1).normal(size=(3, 6, 5)).astype(dtype)
    groups = filter_groups(model, warn=False)
    kinds = attention_groups(groups, model.get_layer("mha"))
    assert [kinds[k].size for k in ("heads", "value_dims", "key_dims")] == [
        4, 5, 3,
    ]
    drop(kinds["heads"], [0])
    drop(kinds["value_dims"], [0, 4])
    drop(kinds["key_dims"], [2])
    small = compact(model)
    config = small.get_layer("mha").get_config()
    assert (config["num_heads"], config["value_dim"], config["key_dim"]) == (
        3, 3, 2,
    )
    check_equal(model, small, x, dtype)


def test_key_dims_keep_the_logit_scale():
    """Without folding the scale into the query projection, a smaller
    key_dim would sharpen every attention distribution."""
    model = randomize(self_attention_model())
    x = np.random.default_rng(2).normal(size=(2, 6, 5)).astype("float32")
    kinds = attention_groups(
        filter_groups(model, warn=False), model.get_layer("mha")
    )
    drop(kinds["value_dims"], [0])
    small = compact(model)
    assert small.get_layer("mha").get_config()["key_dim"] == 2
    query = numpy(small.get_layer("mha").query_dense.kernel)
    original = numpy(model.get_layer("mha").query_dense.kernel)
    np.testing.assert_allclose(
        query, original[:, :, 1:] * np.sqrt(2 / 3), rtol=1e-6
    )
    check_equal(model, small, x, "float32")


def test_heads_only_without_head_dims():
    rule = MultiHeadAttentionRule(head_dims=False)
    model = self_attention_model()
    with keras_dynfilt.pruning.register_channel_rule(
        L.MultiHeadAttention, rule, replace=True
    ):
        groups = filter_groups(model, warn=False)
    kinds = attention_groups(groups, model.get_layer("mha"))
    assert set(kinds) == {"heads", "outputs"}


@pytest.mark.parametrize("causal", [True, False])
def test_masks_are_untouched(causal):
    inputs = keras.Input((6, 5))
    mask = keras.Input((6, 6), dtype="bool")
    x = L.Dense(8, name="embed")(inputs)
    mha = L.MultiHeadAttention(4, key_dim=2, name="mha")
    if causal:
        y = mha(x, x, use_causal_mask=True)
    else:
        y = mha(x, x, attention_mask=mask)
    outputs = L.Dense(2, name="head")(y)
    model = randomize(keras.Model([inputs, mask], outputs))
    rng = np.random.default_rng(3)
    x_value = rng.normal(size=(2, 6, 5)).astype("float32")
    m_value = rng.random((2, 6, 6)) > 0.3
    m_value[..., 0] = True  # every query attends to something
    groups = filter_groups(model, warn=False)
    kinds = attention_groups(groups, model.get_layer("mha"))
    drop(kinds["heads"], [0, 2])
    drop(kinds["value_dims"], [1])
    embed = next(g for g in groups if g.layers == ("embed",))
    drop(embed, [3, 4])
    small = compact(model)
    assert small.get_layer("mha").get_config()["num_heads"] == 2
    assert small.get_layer("embed").units == 6
    check_equal(model, small, [x_value, m_value], "float32")


def test_cross_attention_and_gate():
    query = keras.Input((5, 4))
    context = keras.Input((7, 3))
    q = L.Dense(6, name="q_embed")(query)
    v = L.Dense(9, name="v_embed")(context)
    k = L.Dense(7, name="k_embed")(context)
    y = L.MultiHeadAttention(
        3, key_dim=2, value_dim=2, use_gate=True, name="mha"
    )(q, v, key=k)
    outputs = L.Dense(2, name="head")(L.ReLU()(y))
    model = randomize(keras.Model([query, context], outputs))
    rng = np.random.default_rng(4)
    data = [
        rng.normal(size=(2, 5, 4)).astype("float32"),
        rng.normal(size=(2, 7, 3)).astype("float32"),
    ]
    groups = filter_groups(model, warn=False)
    by_layer = {g.layers: g for g in groups if len(g.layers) == 1}
    for name, remove in (("q_embed", [0]), ("v_embed", [2, 5]),
                         ("k_embed", [6])):
        drop(by_layer[(name,)], remove)
    kinds = attention_groups(groups, model.get_layer("mha"))
    drop(kinds["heads"], [1])
    drop(kinds["outputs"], [0, 3])
    small = compact(model)
    config = small.get_layer("mha").get_config()
    assert config["num_heads"] == 2
    # Query channels (5 kept) and output channels (4 kept) differ now.
    assert tuple(config["output_shape"]) == (4,)
    check_equal(model, small, data, "float32")


def test_attention_axes_and_output_shape():
    inputs = keras.Input((3, 4, 5))
    x = L.Dense(6, name="embed")(inputs)
    y = L.MultiHeadAttention(
        2, key_dim=3, attention_axes=(1, 2), output_shape=7, name="mha"
    )(x, x)
    outputs = L.Dense(2, name="head")(y)
    model = randomize(keras.Model(inputs, outputs))
    x_value = np.random.default_rng(5).normal(size=(2, 3, 4, 5))
    x_value = x_value.astype("float32")
    groups = filter_groups(model, warn=False)
    kinds = attention_groups(groups, model.get_layer("mha"))
    drop(kinds["heads"], [0])
    drop(kinds["outputs"], [2, 5])
    small = compact(model)
    assert tuple(small.get_layer("mha").get_config()["output_shape"]) == (5,)
    check_equal(model, small, x_value, "float32")


def test_attention_scores_keep_the_heads():
    inputs = keras.Input((4, 6))
    y, scores = L.MultiHeadAttention(2, key_dim=3, name="mha")(
        inputs, inputs, return_attention_scores=True
    )
    model = keras.Model(inputs, [L.Dense(2)(y), L.Flatten()(scores)])
    kinds = attention_groups(
        filter_groups(model, warn=False), model.get_layer("mha")
    )
    assert "heads" not in kinds
    assert "value_dims" in kinds


def test_attention_cost():
    model = self_attention_model(key_dim=3, value_dim=5)
    cost = {c.name: c.macs for c in model_cost(model).layers}
    t, d, h, dk, dv = 6, 8, 4, 3, 5
    expected = (
        t * d * h * dk * 2 + t * d * h * dv  # projections
        + h * t * t * (dk + dv)  # logits and weighted sum
        + t * h * dv * d  # output projection
    )
    assert cost["mha"] == expected


@pytest.mark.parametrize(
    "equation, input_shape, output_shape, bias_axes",
    [
        ("ab,bc->ac", (5,), 4, "c"),
        ("...b,bc->...c", (3, 5), 4, "c"),
        ("abc,cde->abde", (3, 5), (3, 2, 4), "de"),
        ("abcd,cde->abe", (3, 2, 5), (3, 4), "e"),
    ],
)
def test_einsum_dense_equations(equation, input_shape, output_shape, bias_axes):
    inputs = keras.Input(input_shape)
    x = L.Dense(6, name="producer")(inputs)
    x = L.EinsumDense(
        equation, output_shape, bias_axes=bias_axes, activation="relu",
        name="einsum",
    )(x)
    x = L.Dense(3, name="consumer")(x)
    model = randomize(keras.Model(inputs, x))
    data = np.random.default_rng(6).normal(size=(2,) + input_shape)
    data = data.astype("float32")
    groups = filter_groups(model, warn=False)
    names = {g.layers for g in groups}
    assert ("producer",) in names and ("einsum",) in names
    for group in groups:
        if group.layers in (("producer",), ("einsum",)):
            drop(group, [1])
    small = compact(model)
    layer = small.get_layer("einsum")
    assert layer.kernel.shape[-1] == 3
    check_equal(model, small, data, "float32")
    macs = {c.name: c.macs for c in model_cost(model).layers}["einsum"]
    kernel = model.get_layer("einsum").kernel.shape
    outputs = int(np.prod(model.get_layer("einsum").output.shape[1:]))
    contracted = int(np.prod(kernel)) // kernel[-1]
    if equation == "abc,cde->abde":
        contracted = kernel[0]
    assert macs == outputs * contracted


def test_einsum_dense_unmapped_equation_is_a_barrier():
    inputs = keras.Input((3, 5))
    x = L.Dense(6, name="producer")(inputs)
    x = L.EinsumDense("abc,bd->acd", (6, 4), name="einsum")(x)
    model = keras.Model(inputs, L.Dense(2)(L.Flatten()(x)))
    groups = filter_groups(model, warn=False)
    assert [b.layer for b in groups.barriers] == ["einsum"]
    assert ("producer",) not in {g.layers for g in groups}


def tiny_vit(dtype="float32"):
    keras.config.set_floatx(dtype)
    try:
        model = keras_dynfilt.models.vit(
            (8, 8, 1), 3, patch_size=4, dim=8, depth=2, num_heads=2,
            mlp_dim=12,
        )
    finally:
        keras.config.set_floatx("float32")
    return randomize(model)


def residual_group(groups):
    return next(g for g in groups if "patch_embed" in g.layers)


def test_inexact_mode_prunes_the_residual_stream_and_reports():
    model = tiny_vit()
    x = np.random.default_rng(7).random((4, 8, 8, 1)).astype("float32")
    exact = filter_groups(model, warn=False)
    assert not any("patch_embed" in g.layers for g in exact)
    groups = filter_groups(model, warn=False, exact=False)
    stream = residual_group(groups)
    assert stream.size == 8
    drop(stream, [2, 5])
    with pytest.warns(UserWarning, match="computes another function"):
        small = compact(model, exact=False, data=x)
    difference = small.compaction_difference
    assert difference.max_abs > 1e-3
    assert "block1_norm1" in difference.normalizations
    assert small.get_layer("block1_norm1").gamma.shape == (6,)
    assert small.get_layer("patch_embed").filters == 6
    assert small.get_layer("class_token").token.shape == (1, 1, 6)
    # Its query and output channels are one stream: no output_shape needed.
    assert small.get_layer("block1_attention").get_config()[
        "output_shape"
    ] is None
    # The masked model runs: the difference is what compaction changed.
    np.testing.assert_allclose(
        difference.max_abs,
        np.abs(numpy(model(x)) - numpy(small(x))).max(),
        rtol=1e-6,
    )


def test_inexact_mode_without_norm_channels_is_exact():
    model = tiny_vit()
    x = np.random.default_rng(8).random((4, 8, 8, 1)).astype("float32")
    groups = filter_groups(model, warn=False, exact=False)
    for group in groups:
        if group.layers == ("block1_mlp1",):
            drop(group, [0, 7])
    kinds = attention_groups(groups, model.get_layer("block2_attention"))
    drop(kinds["heads"], [1])
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        small = compact(model, exact=False, data=x)
    difference = small.compaction_difference
    assert difference.normalizations == ()
    assert difference.max_abs < 1e-5


def test_inexact_mode_requires_data():
    model = tiny_vit()
    with pytest.raises(ValueError, match="`data` is required"):
        compact(model, exact=False)
    with pytest.raises(TypeError, match="`exact` must be a boolean"):
        filter_groups(model, exact="no")


def test_rms_normalization_inexact():
    inputs = keras.Input((4, 5))
    x = L.Dense(6, name="producer")(inputs)
    x = L.RMSNormalization(name="rms")(x)
    x = L.Dense(2, name="head")(x)
    model = randomize(keras.Model(inputs, x))
    assert not any(
        g.layers == ("producer",) for g in filter_groups(model, warn=False)
    )
    groups = filter_groups(model, warn=False, exact=False)
    drop(next(g for g in groups if g.layers == ("producer",)), [0])
    data = np.random.default_rng(9).normal(size=(2, 4, 5)).astype("float32")
    with pytest.warns(UserWarning):
        small = compact(model, exact=False, data=data)
    assert small.get_layer("rms").scale.shape == (5,)
    assert small.compaction_difference.normalizations == ("rms",)


def test_compacted_vit_reloads_with_safe_mode(tmp_path):
    model = tiny_vit()
    x = np.random.default_rng(10).random((2, 8, 8, 1)).astype("float32")
    groups = filter_groups(model, warn=False, exact=False)
    drop(residual_group(groups), [0])
    for group in groups:
        if group.layers == ("block2_mlp1",):
            drop(group, [3])
    with pytest.warns(UserWarning):
        small = compact(model, exact=False, data=x)
    path = tmp_path / "small.keras"
    small.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    np.testing.assert_allclose(
        numpy(loaded(x)), numpy(small(x)), rtol=1e-6, atol=1e-6
    )
    cost = model_cost(small, warn=False)
    assert not cost.unknown


def test_vit_float64_heads_exact():
    model = tiny_vit("float64")
    x = np.random.default_rng(11).random((2, 8, 8, 1))
    groups = filter_groups(model, warn=False)
    for name in ("block1_attention", "block2_attention"):
        kinds = attention_groups(groups, model.get_layer(name))
        drop(kinds["heads"], [0])
        drop(kinds["value_dims"], [1])
    small = compact(model)
    assert small.get_layer("block1_attention").num_heads == 1
    check_equal(model, small, x, "float64")


def test_cnn_attention_hybrid():
    """Convolutions, then attention over the feature map's positions: the
    convolution's filters and the attention's output channels are one
    stream (no normalisation), prunable in the exact mode."""
    inputs = keras.Input((4, 4, 3))
    x = L.Conv2D(8, 3, padding="same", activation="relu", name="conv")(inputs)
    tokens = L.Reshape((16, 8), name="tokens")(x)
    y = L.MultiHeadAttention(2, key_dim=4, name="mha")(tokens, tokens)
    x = L.Add(name="add")([tokens, y])
    x = L.GlobalAveragePooling1D(name="gap")(x)
    model = randomize(keras.Model(inputs, L.Dense(3, name="head")(x)))
    data = np.random.default_rng(12).random((2, 4, 4, 3)).astype("float32")
    groups = filter_groups(model, warn=False)
    stream = next(g for g in groups if "conv" in g.layers)
    assert "mha" in stream.layers
    drop(stream, [1, 6])
    kinds = attention_groups(groups, model.get_layer("mha"))
    drop(kinds["heads"], [0])
    small = compact(model)
    assert small.get_layer("conv").filters == 6
    assert small.get_layer("mha").num_heads == 1
    check_equal(model, small, data, "float32")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_grouped_query_attention(dtype):
    """A key/value head and the query heads sharing it are one unit."""
    inputs = keras.Input((5, 6), dtype=dtype)
    x = L.Dense(8, name="embed", dtype=dtype)(inputs)
    y = L.GroupQueryAttention(
        head_dim=4, num_query_heads=6, num_key_value_heads=3, name="gqa",
        dtype=dtype,
    )(x, x)
    x = L.Add(name="add")([x, y])
    outputs = L.Dense(2, name="head", dtype=dtype)(x)
    model = randomize(keras.Model(inputs, outputs))
    data = np.random.default_rng(13).normal(size=(2, 5, 6)).astype(dtype)
    groups = filter_groups(model, warn=False)
    mine = [g for g in groups if g.layers == ("gqa",)]
    kv, dims = mine
    assert (kv.size, dims.size) == (3, 4)
    stream = next(g for g in groups if "embed" in g.layers)
    assert "gqa" in stream.layers  # output channels follow the query's
    drop(kv, [1])
    drop(dims, [0, 3])
    drop(stream, [2])
    small = compact(model)
    config = small.get_layer("gqa").get_config()
    assert (config["num_key_value_heads"], config["num_query_heads"],
            config["head_dim"]) == (2, 4, 2)
    check_equal(model, small, data, dtype)


def test_prune_in_the_inexact_mode():
    model = tiny_vit()
    x = np.random.default_rng(14).random((8, 8, 8, 1)).astype("float32")
    y = np.zeros(8, "int64")
    with pytest.raises(ValueError, match="`data` is required"):
        keras_dynfilt.pruning.Pruner(model, ratio=0.3, exact=False)
    exact = keras_dynfilt.pruning.prune(model, ratio=0.3)[0]
    assert exact.get_layer("patch_embed").filters == 8
    with pytest.warns(UserWarning, match="computes another function"):
        small, _ = keras_dynfilt.pruning.prune(
            model, ratio=0.3, exact=False, data=(x, y)
        )
    assert small.get_layer("patch_embed").filters < 8
    assert small.get_layer("block1_norm1").gamma.shape[0] < 8
