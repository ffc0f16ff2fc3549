import keras
import numpy as np
import pytest

from keras_dynfilt.layers import MFM
from keras_dynfilt.models import resnet_cifar
from keras_dynfilt.pruning import (
    ChannelRule,
    analyze,
    filter_groups,
    get_channel_rule,
    register_channel_rule,
)
from tests.pruning.builders import (
    depthwise_model,
    mfm_model,
    nested_model,
    residual_model,
    sequential_model,
    shared_layer_model,
)

L = keras.layers


def groups_by_name(model):
    return {g.name: g for g in filter_groups(model, warn=False)}


def test_residual_add_couples_its_inputs_and_output_is_fixed():
    groups = groups_by_name(residual_model())
    assert sorted(groups) == ["a (+1 coupled)", "c"]
    assert groups["a (+1 coupled)"].layers == ("a", "b")
    assert groups["a (+1 coupled)"].units[3] == (("a", 3), ("b", 3))
    assert groups["c"].size == 6  # GAP -> Dense: c is prunable
    # the head produces the model output: never a group


def test_mfm_units_are_pairs_k_and_k_plus_half():
    groups = groups_by_name(mfm_model())
    assert [u for u in groups["conv"].units] == [
        (("conv", k), ("conv", k + 4)) for k in range(4)
    ]
    assert groups["fc"].units[2] == (("fc", 2), ("fc", 5))


def test_grouped_depthwise_and_separable():
    groups = groups_by_name(depthwise_model())
    # expand feeds a depthwise conv: its units stay single filters
    assert groups["expand"].size == 4
    # sep feeds a grouped conv (2 groups): filter i couples i and i + 3
    assert groups["sep"].units[0] == (("sep", 0), ("sep", 3))
    assert groups["grouped"].units[1] == (("grouped", 1), ("grouped", 4))
    # the depthwise-as-grouped conv produces no filters of its own
    assert "dw_as_grouped" not in groups and groups["pre_dw"].size == 4


def test_nested_and_sequential_models():
    groups = groups_by_name(nested_model())
    assert sorted(groups) == [
        "block/seq_conv", "inner/inner_conv", "outer_conv"
    ]
    assert groups_by_name(sequential_model())["s1"].size == 4
    assert groups_by_name(sequential_model())["s2"].size == 3


def test_shared_layer_calls_keep_the_same_filters():
    groups = groups_by_name(shared_layer_model())
    assert groups["shared"].units[2] == (("shared", 2),)
    assert "after" in groups


def test_option_a_resnet_groups_follow_the_zero_padding():
    groups = groups_by_name(resnet_cifar(20))
    stream = groups["conv1 (+9 coupled)"]
    # stem + 3 conv2 per stage: channel c of stage 1 is channel c of
    # stages 2 and 3 (zeros are appended after the 16 stage-1 channels).
    assert stream.size == 16 and len(stream.layers) == 10
    assert stream.units[5][-1] == ("stage3_block3_conv2", 5)
    stage2 = groups["stage2_block1_conv2 (+5 coupled)"]
    assert stage2.size == 16
    assert stage2.units[0][0] == ("stage2_block1_conv2", 16)
    assert groups["stage3_block1_conv2 (+2 coupled)"].size == 32
    assert groups["stage1_block1_conv1"].size == 16
    assert len(groups) == 3 + 9
    assert not filter_groups(resnet_cifar(20)).barriers


def test_option_b_resnet_couples_each_stage():
    groups = groups_by_name(resnet_cifar(20, shortcut="B"))
    names = [n for n in groups if "coupled" in n]
    assert [groups[n].size for n in names] == [16, 32, 64]


class Unknown(L.Conv2D):
    """A subclass is never assumed to behave like its parent."""


@pytest.mark.parametrize(
    "make, reason",
    [
        (lambda x: Unknown(3, 1, name="odd")(x), "no channel rule"),
        (lambda x: L.Softmax(name="odd")(x), "softmax over the channel"),
        (lambda x: L.Activation("softmax", name="odd")(x), "mixes channels"),
        (lambda x: L.Permute((3, 1, 2), name="odd")(x), "no channel rule"),
    ],
)
def test_barriers_are_reported_and_block_pruning(make, reason):
    inputs = keras.Input((4, 4, 3))
    x = L.Conv2D(4, 1, name="producer")(inputs)
    x = make(x)
    outputs = L.Dense(2, name="head")(L.Flatten(name="flatten")(x))
    model = keras.Model(inputs, outputs)
    with pytest.warns(UserWarning, match=rf"barriers.*odd.*{reason}"):
        groups = filter_groups(model)
    assert "producer" not in [g.name for g in groups]
    assert groups.barriers[0].layer == "odd"
    assert "barrier: odd" in groups.summary()


@pytest.mark.parametrize(
    "make",
    [
        lambda x: L.LayerNormalization()(x),
        # (GroupNormalization prunes whole groups: test_zoo_layers.py.)
        lambda x: L.Activation("sigmoid")(x),
    ],
)
def test_channels_whose_statistics_change_are_fixed(make):
    inputs = keras.Input((4, 4, 3))
    x = make(L.Conv2D(4, 1, name="producer")(inputs))
    outputs = L.Dense(2)(L.GlobalAveragePooling2D()(x))
    assert filter_groups(keras.Model(inputs, outputs), warn=False) == []


@pytest.mark.parametrize("activation, prunable", [
    ("relu", True), ("tanh", True), ("gelu", True), ("sigmoid", False),
    ("softplus", False), ("softmax", False),
])
def test_producer_activation(activation, prunable):
    inputs = keras.Input((6,))
    x = L.Dense(4, activation=activation, name="d")(inputs)
    model = keras.Model(inputs, L.Dense(2)(x))
    names = [g.name for g in filter_groups(model, warn=False)]
    assert ("d" in names) == prunable


def test_model_output_and_concat_inputs_of_outputs_are_fixed():
    inputs = keras.Input((3, 3, 2))
    p = L.Conv2D(2, 1, name="p")(inputs)
    q = L.Conv2D(2, 1, name="q")(inputs)
    mid = L.Conv2D(3, 1, name="mid")(inputs)
    outputs = [L.Concatenate()([p, q]), L.Conv2D(2, 1)(mid)]
    groups = filter_groups(keras.Model(inputs, outputs), warn=False)
    assert [g.name for g in groups] == ["mid"]
    graph = analyze(keras.Model(inputs, outputs))
    assert any("model output" in r for r in graph.fixed.values())


def test_filter_weights_concatenate_the_unit_kernels():
    model = mfm_model()
    group = groups_by_name(model)["conv"]
    weights = group.filter_weights()
    kernel = keras.ops.convert_to_numpy(model.get_layer("conv").kernel.value)
    assert weights.shape == (4, 2 * 3 * 3 * 2)
    np.testing.assert_array_equal(
        weights[1],
        np.concatenate([kernel[..., 1].ravel(), kernel[..., 5].ravel()]),
    )


def test_register_channel_rule_makes_a_subclass_prunable():
    class Rescaled(L.ReLU):
        pass

    from keras_dynfilt.pruning.rules import PassThrough

    register_channel_rule(Rescaled, PassThrough())
    assert isinstance(get_channel_rule(Rescaled()), ChannelRule)
    inputs = keras.Input((4,))
    x = Rescaled()(L.Dense(3, name="d")(inputs))
    model = keras.Model(inputs, L.Dense(2)(x))
    assert [g.name for g in filter_groups(model)] == ["d"]


def test_registry_and_model_validation():
    with pytest.raises(TypeError, match=r"`layer_cls` must be a class"):
        register_channel_rule("Conv2D", ChannelRule())
    with pytest.raises(TypeError, match=r"`rule` must be a `ChannelRule`"):
        register_channel_rule(L.Conv2D, object())

    class Sub(keras.Model):
        def call(self, x):
            return x

    # A hand-written `call` is traced (tests/pruning/test_zoo_tracing.py);
    # unbuilt, its input shapes are unknown.
    with pytest.raises(TypeError, match=r"trace model 'sub' \(Sub\).*build"):
        filter_groups(Sub())
    with pytest.raises(ValueError, match=r"Sequential model must be built"):
        filter_groups(keras.Sequential([L.Dense(2)]))


def test_mfm_layer_has_the_pair_rule():
    # Not just some rule: MFM's own, which pairs channels k and k + N/2 on
    # the last axis and is a named barrier on any other axis.
    assert type(get_channel_rule(MFM())).__name__ == "MFMRule"

    def model(axis):
        inputs = keras.Input((4, 4, 6))
        x = L.Conv2D(6, 1, name="conv")(inputs)
        x = MFM(axis=axis, name="mfm")(x)
        return keras.Model(inputs, L.Dense(2)(L.Flatten()(x)))

    groups = filter_groups(model(-1), warn=False)
    assert [g.units for g in groups] == [
        tuple((("conv", k), ("conv", k + 3)) for k in range(3))
    ]
    assert groups.barriers == []
    groups = filter_groups(model(1), warn=False)
    assert list(groups) == []
    assert [(b.layer, b.reason) for b in groups.barriers] == [
        ("mfm", "MFM over a non-last axis")
    ]
