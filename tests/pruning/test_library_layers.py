"""Pruning this library's own layers: NDDR, CrossStitch, FilterGenerator,
DimensionReduction and WSoftmaxHead (channel rules and cost formulas)."""

import keras
import numpy as np
import pytest

from keras_dynfilt.layers import (
    NDDR,
    CrossStitch,
    DimensionReduction,
    FilterGenerator,
    WSoftmaxHead,
)
from keras_dynfilt.pruning import (
    apply_group_mask,
    compact,
    filter_groups,
    model_cost,
)
from tests.pruning.builders import (
    max_relative_difference,
    randomize,
    zero_random_units,
)

L = keras.layers


def nddr_model(use_batch_norm=True, per_channel=True):
    inputs = keras.Input((8, 8, 3))
    a = L.Conv2D(6, 3, padding="same", name="a")(inputs)
    a = L.ReLU(name="relu_a")(L.BatchNormalization(name="bn_a")(a))
    b = L.Conv2D(4, 3, padding="same", activation="relu", name="b")(inputs)
    a, b = NDDR(use_batch_norm=use_batch_norm, name="nddr")([a, b])
    a = L.Conv2D(5, 3, padding="same", name="ca")(a)
    b = L.Conv2D(5, 3, padding="same", name="cb")(b)
    a, b = CrossStitch(per_channel=per_channel, name="cs")([a, b])
    x = L.Concatenate(name="cat")(
        [L.GlobalAveragePooling2D()(a), L.GlobalAveragePooling2D()(b)]
    )
    return keras.Model(inputs, L.Dense(3, name="head")(x), name="nddr_net")


def generator_model():
    x = keras.Input((10, 10, 3))
    z = keras.Input((6,))
    h = L.Conv2D(6, 3, activation="relu", name="c1")(x)
    z1 = L.Dense(7, activation="relu", name="zd")(z)
    z2 = DimensionReduction(4, name="dr")(h)
    y = FilterGenerator(5, 3, 4, activation="relu", name="fg")([h, z1])
    y = FilterGenerator(4, 3, 3, padding="same", name="fg2")([y, z2])
    f = L.Dense(8, activation="relu", name="feat")(
        L.GlobalAveragePooling2D()(y)
    )
    return keras.Model([x, z], WSoftmaxHead(5, name="ws")(f), name="fg_net")


BUILDERS = {
    "nddr_bn_crossstitch_per_channel": nddr_model,
    "nddr_no_bn_crossstitch_scalar": lambda: nddr_model(False, False),
    "filter_generator_head": generator_model,
}


def inputs_for(model, seed=1):
    rng = np.random.default_rng(seed)
    found = [
        rng.normal(size=(3,) + tuple(x.shape[1:])).astype("float32")
        for x in model.inputs
    ]
    return found if len(found) > 1 else found[0]


def run(model, data, training=False):
    return keras.ops.convert_to_numpy(model(data, training=training))


def test_groups():
    groups = filter_groups(nddr_model(), warn=False)
    found = {g.name: (g.size, g.layers) for g in groups}
    # NDDR output k keeps input k's width: coupled with task k's producer.
    assert found["a (+1 coupled)"] == (6, ("a", "nddr"))
    assert found["b (+1 coupled)"] == (4, ("b", "nddr"))
    # CrossStitch: channel c of both tasks is one unit.
    assert found["ca (+1 coupled)"] == (5, ("ca", "cb"))
    assert not groups.barriers
    nddr_unit = groups[1].units[0]
    assert nddr_unit == (("b", 0), ("nddr", 6))  # task offset 6

    groups = filter_groups(generator_model(), warn=False)
    found = {g.name: g.size for g in groups}
    assert found == {"c1": 6, "zd": 7, "fg": 5, "fg2": 4, "feat": 8}
    assert not groups.barriers
    fg = next(g for g in groups if g.name == "fg")
    assert fg.filter_weights().shape == (5, 7 * 4)  # Lf x M per filter


def test_filter_generator_filter_rows_are_its_coefficient_columns():
    model = randomize(generator_model())
    fg = next(g for g in filter_groups(model) if g.name == "fg")
    a = keras.ops.convert_to_numpy(model.get_layer("fg").coefficient_kernel)
    rows = fg.filter_weights()
    np.testing.assert_array_equal(rows[2], a[:, 8:12].reshape(-1))


def test_masking_zeroes_the_filter_parameters():
    model = randomize(generator_model())
    groups = filter_groups(model)
    fg = next(g for g in groups if g.name == "fg")
    keep = np.array([True, False, True, True, False])
    apply_group_mask(fg, keep)
    layer = model.get_layer("fg")
    a = keras.ops.convert_to_numpy(layer.coefficient_kernel).reshape(7, 5, 4)
    c = keras.ops.convert_to_numpy(layer.coefficient_bias).reshape(5, 4)
    bias = keras.ops.convert_to_numpy(layer.bias)
    for arr in (a[:, ~keep], c[~keep], bias[~keep]):
        assert not arr.any()
    assert a[:, keep].all() and bias[keep].all()
    feat = next(g for g in groups if g.name == "feat")
    keep = np.ones(8, bool)
    keep[3] = False
    apply_group_mask(feat, keep)  # the head's kernel row 3 is zeroed too
    head = keras.ops.convert_to_numpy(model.get_layer("ws").kernel)
    assert not head[3].any() and head[np.arange(8) != 3].all()


@pytest.mark.parametrize("name", sorted(BUILDERS))
@pytest.mark.parametrize("training", [False, True])
def test_masked_model_equals_compacted_model(name, training):
    model = randomize(BUILDERS[name]())
    zero_random_units(model, seed=3)
    data = inputs_for(model)
    small = compact(model)
    assert small.count_params() < model.count_params()
    diff = max_relative_difference(
        run(model, data, training), run(small, data, training)
    )
    assert diff <= 1e-5
    expected = model_cost(model, compacted=True)
    found = model_cost(small)
    assert found.params == expected.params == small.count_params()
    assert found.macs == expected.macs
    assert [c.macs for c in found.layers] == [
        c.macs for c in expected.layers
    ]


def test_save_load_safe_mode(tmp_path):
    for name, build in BUILDERS.items():
        model = randomize(build())
        zero_random_units(model, seed=5)
        small = compact(model)
        path = tmp_path / f"{name}.keras"
        small.save(path)
        loaded = keras.saving.load_model(path, safe_mode=True)
        data = inputs_for(model)
        np.testing.assert_allclose(
            run(loaded, data), run(small, data), rtol=1e-6, atol=1e-6
        )
        for old, new in zip(small.layers, loaded.layers):
            assert old.get_config() == new.get_config()


def _layer_cost(cost, name):
    (found,) = [c for c in cost.layers if c.name == name]
    return found.params, found.macs


def test_hand_counts_full_model():
    cost = model_cost(generator_model())
    # x 8x8x6 (after c1), z 7, N=5, M=4, 3x3 valid -> 6x6 outputs.
    assert _layer_cost(cost, "fg") == (
        3 * 3 * 6 * 4 + 7 * 5 * 4 + 5 * 4 + 5,
        36 * 9 * 6 * 4 + 36 * 5 * 4 + 7 * 5 * 4,
    )
    # fg2: x 6x6x5, z 4, N=4, M=3, same padding.
    assert _layer_cost(cost, "fg2") == (
        3 * 3 * 5 * 3 + 4 * 4 * 3 + 4 * 3 + 4,
        36 * 9 * 5 * 3 + 36 * 4 * 3 + 4 * 4 * 3,
    )
    # DimensionReduction on 8x8x6: conv 4x4/4 -> 2x2x6, BN, conv 2x2 ->
    # 1x1x6, BN, Dense(4).
    assert _layer_cost(cost, "dr") == (
        16 * 6 * 6 + 4 * 6 + 4 * 6 * 6 + 4 * 6 + 6 * 4 + 4,
        4 * 6 * 16 * 6 + 4 * 6 + 6 * 4 * 6 + 6 + 6 * 4,
    )
    assert _layer_cost(cost, "ws") == (8 * 5, 8 * 5)

    cost = model_cost(nddr_model())
    # 1x1 conv over 6 + 4 channels into 6 + 4, and BN on 10 channels.
    assert _layer_cost(cost, "nddr") == (
        10 * 6 + 10 * 4 + 4 * 10, 64 * 10 * 10 + 64 * 10
    )
    assert _layer_cost(cost, "cs") == (5 * 2 * 2, 2 * 2 * 64 * 5)
    cost = model_cost(nddr_model(False, False))
    assert _layer_cost(cost, "nddr") == (100, 64 * 10 * 10)
    assert _layer_cost(cost, "cs") == (4, 2 * 2 * 64 * 5)


def test_hand_counts_after_compaction():
    model = randomize(generator_model())
    keep_c1 = np.array([1, 1, 0, 1, 1, 0], bool)  # 4 of 6
    keep_fg = np.array([1, 0, 1, 1, 0], bool)  # 3 of 5
    keep_zd = np.array([1, 1, 1, 0, 1, 1, 0], bool)  # 5 of 7
    small = compact(
        model, masks={"c1": keep_c1, "fg": keep_fg, "zd": keep_zd}
    )
    cost = model_cost(small)
    assert _layer_cost(cost, "fg") == (
        3 * 3 * 4 * 4 + 5 * 3 * 4 + 3 * 4 + 3,
        36 * 9 * 4 * 4 + 36 * 3 * 4 + 5 * 3 * 4,
    )
    assert _layer_cost(cost, "fg2") == (
        3 * 3 * 3 * 3 + 4 * 4 * 3 + 4 * 3 + 4,
        36 * 9 * 3 * 3 + 36 * 4 * 3 + 4 * 4 * 3,
    )
    # DimensionReduction reads 4 channels; its inner width stays 6.
    assert _layer_cost(cost, "dr") == (
        16 * 4 * 6 + 4 * 6 + 4 * 6 * 6 + 4 * 6 + 6 * 4 + 4,
        4 * 6 * 16 * 4 + 4 * 6 + 6 * 4 * 6 + 6 + 6 * 4,
    )
    assert small.get_layer("dr").get_config()["filters"] == 6

    model = randomize(nddr_model())
    small = compact(
        model,
        masks={
            "a": np.array([1, 0, 1, 1, 0, 1], bool),  # task a: 4 of 6
            "ca": np.array([1, 1, 0, 1, 1], bool),  # 4 of 5 (both tasks)
        },
    )
    cost = model_cost(small)
    assert _layer_cost(cost, "nddr") == (
        8 * 4 + 8 * 4 + 4 * 8, 64 * 8 * 8 + 64 * 8
    )
    assert _layer_cost(cost, "cs") == (4 * 2 * 2, 2 * 2 * 64 * 4)
    kernels = [tuple(k.shape) for k in small.get_layer("nddr").kernels]
    assert kernels == [(8, 4), (8, 4)]


def test_nddr_mask_by_layer_name_removes_the_task_producer_too():
    model = randomize(nddr_model())
    keep = np.ones(10, bool)
    keep[7] = False  # task b's output channel 1
    small = compact(model, masks={"nddr": keep})
    assert small.get_layer("b").filters == 3
    assert small.get_layer("a").filters == 6
    assert [tuple(k.shape) for k in small.get_layer("nddr").kernels] == [
        (9, 6), (9, 3)
    ]


def test_wsoftmax_head_training_logits_after_compaction():
    features = keras.Input((6,))
    labels = keras.Input((), dtype="int32")
    f = L.Dense(8, activation="relu", name="feat")(features)
    head = WSoftmaxHead(4, alpha=1.0, name="ws")
    model = keras.Model([features, labels], head(f, labels))
    randomize(model)
    groups = filter_groups(model)
    assert [g.name for g in groups] == ["feat"]
    keep = np.ones(8, bool)
    keep[[1, 5]] = False
    apply_group_mask(groups[0], keep)
    small = compact(model)
    assert small.get_layer("ws").kernel.shape == (6, 4)
    data = [
        np.random.default_rng(0).normal(size=(5, 6)).astype("float32"),
        np.array([0, 1, 2, 3, 1], "int32"),
    ]
    diff = max_relative_difference(
        run(model, data, True), run(small, data, True)
    )
    assert diff <= 1e-5


def test_filter_kernel_positions():
    from keras_dynfilt.pruning import get_channel_rule

    model = generator_model()
    layer = model.get_layer("fg")
    ((key, axis, index),) = get_channel_rule(layer).filter_kernel_positions(
        layer
    )
    assert (key, axis) == ("coefficient_kernel", 1)
    np.testing.assert_array_equal(index, np.repeat(np.arange(5), 4))
    model = nddr_model()
    layer = model.get_layer("nddr")
    found = get_channel_rule(layer).filter_kernel_positions(layer)
    assert [(k, a, list(i)) for k, a, i in found] == [
        ("kernel_0", 1, list(range(6))), ("kernel_1", 1, list(range(6, 10)))
    ]
    layer = model.get_layer("a")
    ((key, axis, index),) = get_channel_rule(layer).filter_kernel_positions(
        layer
    )
    assert (key, axis, list(index)) == ("kernel", -1, list(range(6)))
