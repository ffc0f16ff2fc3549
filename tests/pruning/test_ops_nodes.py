"""The constructs of the networks people use: Keras ops applied to tensors,
BatchNormalization without scale or center, squeeze-and-excitation gates,
zero-preserving scale layers, and the report of what holds channels fixed.
"""

import keras
import numpy as np
import pytest
from keras import ops
from keras.src.applications.convnext import LayerScale

from keras_dynfilt.callbacks import SoftFilterPruning
from keras_dynfilt.pruning import (
    apply_group_mask,
    compact,
    filter_groups,
    model_cost,
)
from tests.pruning.builders import (
    max_relative_difference,
    random_inputs,
    randomize,
    run,
    zero_random_units,
)

L = keras.layers


def check_exact(model, tmp_path, seed=3, training=False):
    """Masked == compacted, priced exactly, fewer MACs, safe_mode reload."""
    randomize(model, seed=seed)
    zero_random_units(model, seed=seed)
    x = random_inputs(model, batch=4)
    small = compact(model)
    assert max_relative_difference(run(model, x), run(small, x)) <= 1e-5
    if training:
        assert max_relative_difference(
            run(model, x, training=True), run(small, x, training=True)
        ) <= 1e-5
    priced = model_cost(model, compacted=True)
    assert priced.macs == model_cost(small).macs
    assert priced.params == small.count_params()
    assert model_cost(small).macs < model_cost(model).macs
    path = str(tmp_path / "small.keras")
    small.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    assert max_relative_difference(run(small, x), run(loaded, x)) <= 1e-6
    return small


def names(groups):
    return [set(g.layers) for g in groups]


def ops_model():
    inputs = keras.Input((8, 8, 3))
    a = L.Conv2D(8, 1, name="a")(inputs)
    b = L.Conv2D(8, 3, padding="same", name="b")(inputs)
    x = ops.relu(a + b) * 2.0                       # Add, Relu, Multiply
    x = ops.pad(x, [[0, 0], [1, 1], [1, 1], [0, 0]])  # spatial: pass-through
    left, right = ops.split(x, [3], axis=-1)         # channel slices
    left = L.Conv2D(4, 3, name="c")(left)
    right = ops.maximum(right, 0.0) - right / 4.0
    right = L.Conv2D(4, 3, name="d")(right)
    x = ops.concatenate([left, right], axis=-1)
    x = ops.pad(x, [[0, 0], [0, 0], [0, 0], [0, 2]])  # channel: zeros
    x = ops.mean(x, axis=(1, 2), keepdims=True)
    x = ops.reshape(x, (-1, 10))
    return keras.Model(inputs, L.Dense(3, name="head")(x), name="ops")


def test_ops_on_tensors_follow_the_rules_of_their_layers(tmp_path):
    model = ops_model()
    groups = filter_groups(model, warn=False)
    assert not groups.barriers
    # Each side of the split is a group of its own: a group keeping one
    # unit then never empties one output of the split.
    assert names(groups) == [{"a", "b"}, {"a", "b"}, {"c"}, {"d"}]
    assert sorted(g.size for g in groups[:2]) == [3, 5]
    small = check_exact(model, tmp_path)
    # The split point moves to the number of kept channels before it.
    split = next(op for op in small._operations if "split" in op.name)
    assert list(split.indices_or_sections) == [
        small.get_layer("c").kernel.shape[2]
    ]
    assert small.get_layer("a").filters == (
        small.get_layer("c").kernel.shape[2]
        + small.get_layer("d").kernel.shape[2]
    )
    # Operation nodes cost 0 and have no layer-only methods called on them.
    cost = model_cost(model)
    assert {c.class_name for c in cost.layers} >= {"Add", "Split", "Pad"}
    assert all(c.macs == 0 for c in cost.layers if c.class_name == "Pad")


@pytest.mark.parametrize(
    "make, prunable, reason",
    [
        (lambda x: x * 3.0, True, None),
        (lambda x: x / 2.0, True, None),
        (lambda x: -ops.abs(x), True, None),
        (lambda x: x + 3.0, False, "Add(0) != 0"),
        (lambda x: ops.sigmoid(x), False, "Sigmoid(0) != 0"),
        (lambda x: ops.exp(x), False, "Exp(0) != 0"),
        (lambda x: 2.0 / (x + 1.0), False, "!= 0"),
        (lambda x: ops.pad(x, [[0, 0], [1, 1], [1, 1], [0, 0]],
                           constant_values=-np.inf), False, "pads with -inf"),
    ],
)
def test_constant_operands_pass_through_or_hold_fixed(make, prunable, reason):
    inputs = keras.Input((6, 6, 2))
    x = make(L.Conv2D(4, 1, name="producer")(inputs))
    x = L.Conv2D(3, 3, name="consumer")(x)
    model = keras.Model(inputs, L.Dense(2)(L.Flatten()(x)))
    groups = filter_groups(model, warn=False)
    assert ({"producer"} in names(groups)) == prunable
    if reason is not None:
        held = [h for h in groups.held_fixed() if "producer" in h.layers]
        assert held and reason in held[0].reason
        assert held[0].reason.startswith("consumer: reads channels")


def test_minus_infinity_padding_then_max_pooling_is_exact(tmp_path):
    # A pre-activation ResNet stem: pad with -inf, 3x3 max pooling.
    inputs = keras.Input((9, 9, 3))
    x = L.Conv2D(6, 3, padding="same", name="stem")(inputs)
    x = L.ReLU()(L.BatchNormalization()(x))
    x = ops.pad(x, [[0, 0], [1, 1], [1, 1], [0, 0]], constant_values=-np.inf)
    x = L.MaxPooling2D(3, strides=2)(x)
    x = L.Conv2D(4, 3, name="next")(x)
    model = keras.Model(inputs, L.Dense(2)(L.Flatten()(x)))
    groups = filter_groups(model, warn=False)
    assert {"stem"} in names(groups)
    check_exact(model, tmp_path)


def test_per_channel_constant_is_a_named_barrier():
    inputs = keras.Input((6, 6, 3))
    x = L.Conv2D(4, 1, name="producer")(inputs)
    x = ops.multiply(x, np.arange(1, 5, dtype="float32"))
    model = keras.Model(inputs, L.Dense(2)(L.Flatten()(x)))
    with pytest.warns(UserWarning, match="one value per channel"):
        groups = filter_groups(model)
    # The producer is the only conv: no group is left, and why is named.
    assert list(groups) == []
    assert [(b.class_name, b.reason) for b in groups.barriers] == [
        ("Multiply", "a constant operand with one value per channel")
    ]
    held = {h.layers: h for h in groups.held_fixed()}
    assert held[("producer",)].filters == 4
    assert held[("producer",)].reason.endswith(
        "input of a barrier (a constant operand with one value per channel)"
    )


def bn_model(scale, center):
    inputs = keras.Input((6, 6, 3))
    x = L.Conv2D(6, 3, padding="same", name="conv")(inputs)
    x = L.BatchNormalization(scale=scale, center=center, name="bn")(x)
    x = L.ReLU()(x)
    x = L.Conv2D(4, 3, name="conv2")(x)
    x = L.BatchNormalization(scale=scale, center=center, name="bn2")(x)
    x = L.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, L.Dense(2, name="head")(x))


@pytest.mark.parametrize("scale, center", [
    (False, True), (True, False), (False, False), (True, True),
])
def test_batch_normalization_with_every_flag_is_prunable(
    scale, center, tmp_path
):
    model = bn_model(scale, center)
    groups = filter_groups(model, warn=False)
    assert names(groups) == [{"conv"}, {"conv2"}]
    small = check_exact(model, tmp_path, training=True)
    assert small.get_layer("bn").moving_mean.shape[0] < 6


def test_batch_normalization_scale_false_masking_zeroes_beta_and_mean():
    model = randomize(bn_model(scale=False, center=True))
    group = filter_groups(model, warn=False)[0]
    keep = np.ones(group.size, bool)
    keep[[1, 4]] = False
    apply_group_mask(group, keep)
    bn = model.get_layer("bn")
    for weight in (bn.beta, bn.moving_mean):
        value = keras.ops.convert_to_numpy(weight)
        assert np.all(value[[1, 4]] == 0) and np.all(value[[0, 2]] != 0)
    # Nothing removed yet: the priced compact model is the full one without
    # the two units, and the call does not need gamma.
    cost = model_cost(model, compacted=True)
    assert cost.macs < model_cost(model).macs


def se_model(activation="sigmoid", hard=False):
    """An EfficientNet / MobileNetV3 block: expand, depthwise, SE, project."""
    inputs = keras.Input((8, 8, 4))
    x = L.Conv2D(12, 1, use_bias=False, name="expand")(inputs)
    x = L.BatchNormalization(name="expand_bn")(x)
    x = L.Activation("swish")(x)
    x = L.DepthwiseConv2D(3, padding="same", name="dw")(x)
    x = L.BatchNormalization(name="dw_bn")(x)
    x = L.ReLU()(x)
    s = L.GlobalAveragePooling2D(keepdims=True)(x)
    s = L.Conv2D(3, 1, activation="relu", name="se_reduce")(s)
    if hard:
        s = L.Conv2D(12, 1, name="se_expand")(s)
        s = L.ReLU(6.0)(s + 3.0) * (1.0 / 6.0)      # hard sigmoid, ops
    else:
        s = L.Conv2D(12, 1, activation=activation, name="se_expand")(s)
    x = L.Multiply(name="excite")([x, s])
    x = L.Conv2D(4, 1, name="project")(x)
    x = L.Add()([x, inputs])
    x = L.Conv2D(5, 3, name="tail")(x)
    return keras.Model(inputs, L.Dense(2)(L.Flatten()(x)))


@pytest.mark.parametrize("hard", [False, True])
def test_squeeze_and_excitation_gate_prunes_with_the_main_path(
    hard, tmp_path
):
    model = se_model(hard=hard)
    groups = filter_groups(model, warn=False)
    assert {"expand", "se_expand"} in names(groups)
    assert {"se_reduce"} in names(groups)
    small = check_exact(model, tmp_path, training=True)
    assert small.get_layer("se_expand").filters == (
        small.get_layer("expand").filters
    ) < 12


def test_gate_read_by_a_convolution_is_held_fixed_with_its_reason():
    inputs = keras.Input((6, 6, 3))
    g = L.Conv2D(4, 1, activation="sigmoid", name="gate")(inputs)
    x = L.Conv2D(3, 1, name="reader")(g)
    model = keras.Model(inputs, L.Dense(2)(L.Flatten()(x)))
    groups = filter_groups(model, warn=False)
    assert {"gate"} not in names(groups)
    held = next(h for h in groups.held_fixed() if "gate" in h.layers)
    assert "reader: reads channels that stay non-zero" in held.reason
    assert "gate: activation(0) != 0" in held.reason


def scale_layers_model():
    inputs = keras.Input((6, 6, 3))
    x = L.Conv2D(4, 3, padding="same", name="a")(inputs)
    x = L.Rescaling(1.0 / 255, name="rescale")(x)
    x = L.Rescaling([1.0, 2.0, 3.0, 4.0], name="per_channel")(x)
    x = L.Dense(8, name="fc")(x)
    x = L.Activation("gelu")(x)
    x = L.Dense(4, name="fc2")(x)
    x = LayerScale(0.5, 4, name="layer_scale")(x)
    x = L.Add()([x, L.Conv2D(4, 1, name="b")(inputs)])
    return keras.Model(inputs, L.Dense(2)(L.Flatten()(x)))


def test_rescaling_and_layer_scale_are_exact(tmp_path):
    model = scale_layers_model()
    groups = filter_groups(model, warn=False)
    assert not groups.barriers
    assert names(groups) == [{"a"}, {"fc"}, {"fc2", "b"}]
    small = check_exact(model, tmp_path)
    kept = small.get_layer("a").filters
    assert len(small.get_layer("per_channel").scale) == kept
    assert small.get_layer("layer_scale").projection_dim == (
        small.get_layer("b").filters
    )


def test_rescaling_with_an_offset_holds_its_producer():
    inputs = keras.Input((6, 6, 3))
    x = L.Conv2D(4, 3, name="a")(inputs)
    x = L.Rescaling(2.0, offset=-1.0, name="shift")(x)
    model = keras.Model(inputs, L.Dense(2)(L.Flatten()(x)))
    groups = filter_groups(model, warn=False)
    assert groups == []
    assert "shift: offset != 0" in groups.held_fixed()[0].reason


def unprunable_model():
    inputs = keras.Input((6, 6, 3))
    x = L.Conv2D(4, 3, activation="softplus", name="soft")(inputs)
    x = L.Conv2D(4, 3, name="conv")(x)
    x = L.Permute((3, 1, 2), name="odd")(x)
    return keras.Model(inputs, L.Dense(2)(L.Flatten()(x)))


def test_warning_and_callback_error_name_what_holds_channels():
    model = unprunable_model()
    with pytest.warns(UserWarning) as record:
        groups = filter_groups(model)
    text = " ".join(str(w.message) for w in record)
    assert groups == []
    assert "Only 0% of the filters" in text
    assert "odd (Permute: no channel rule" in text
    assert "soft: activation(0) != 0" in text
    assert "conv: reads channels that stay non-zero" in text
    x = np.zeros((2, 6, 6, 3), "float32")
    y = np.zeros((2, 2), "float32")
    model.compile(optimizer="sgd", loss="mse")
    with pytest.raises(ValueError, match=r"(?s)Held fixed:.*soft: activation"):
        model.fit(x, y, epochs=1, verbose=0,
                  callbacks=[SoftFilterPruning(pruning_rate=0.3)])
