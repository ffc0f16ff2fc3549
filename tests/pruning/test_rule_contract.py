"""The rule contract: one registration per class (scoped in tests), the
cost on the rule, a public `RuleContext` that rules use and nothing else."""

import ast
import math
import pathlib

import keras
import numpy as np
import pytest

from keras_dynfilt import _keras_private
from keras_dynfilt.cross_task._graph import probe_points
from keras_dynfilt.pruning import (
    ChannelGraph,
    ChannelRule,
    RuleContext,
    WeightAxis,
    analyze,
    apply_group_mask,
    filter_groups,
    get_channel_rule,
    get_layer_cost,
    macs_reduction,
    masking,
    model_cost,
    register_channel_rule,
    register_layer_cost,
)
from keras_dynfilt.pruning.rules import keras_ops
from keras_dynfilt.pruning.rules.keras_layers import (
    MaxPoolingRule,
    PassThrough,
    ProducerRule,
)

L = keras.layers
RULES = pathlib.Path(keras_ops.__file__).parent


class Scale(L.Layer):
    """Multiplies channel `c` by its own weight."""

    def build(self, input_shape):
        self.scale = self.add_weight(
            shape=(input_shape[-1],), initializer="ones"
        )

    def call(self, x):
        return x * self.scale


class ScaleRule(ChannelRule):
    elementwise = True

    def propagate(self, ctx, layer, inputs, output_shapes):
        return [inputs[0].slots]

    def weights(self, layer, in_slots, out_slots):
        return {"scale": [WeightAxis(0, in_slots[0], False)]}

    def macs(self, layer, input_shapes, output_shapes):
        return math.prod(output_shapes[0][1:])


def _scaled_model():
    inputs = keras.Input((4, 4, 3))
    x = L.Conv2D(6, 3, padding="same", name="conv")(inputs)
    x = Scale(name="scale")(x)
    x = L.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, L.Dense(2, name="fc")(x))


def test_scoped_registration_restores_the_registry():
    model = _scaled_model()
    assert get_channel_rule(model.get_layer("scale")) is None
    with pytest.warns(UserWarning, match="barrier"):
        assert filter_groups(model) == []
    rule = ScaleRule()
    with register_channel_rule(Scale, rule) as registration:
        assert registration.layer_cls is Scale
        assert get_channel_rule(model.get_layer("scale")) is rule
        groups = filter_groups(model)
        assert [(g.name, g.size) for g in groups] == [("conv", 6)]
        # The rule's `macs` is the layer's cost: 4 * 4 * 6 per sample.
        cost = model_cost(model)
        assert [c.macs for c in cost.layers if c.name == "scale"] == [96]
        assert cost.complete
    assert get_channel_rule(model.get_layer("scale")) is None
    assert get_layer_cost(model.get_layer("scale")) is None


def test_registering_a_class_twice_is_an_error():
    with register_channel_rule(Scale, ScaleRule()):
        with pytest.raises(ValueError, match=r"already has a registered "
                           r"channel rule: pass `replace=True`"):
            register_channel_rule(Scale, ScaleRule())
        other = ScaleRule()
        with register_channel_rule(Scale, other, replace=True):
            assert get_channel_rule(Scale()) is other
        # The replaced rule is back once the inner block exits.
        assert isinstance(get_channel_rule(Scale()), ScaleRule)
        assert get_channel_rule(Scale()) is not other
    with pytest.raises(ValueError, match=r"`replace=True`"):
        register_channel_rule(L.Conv2D, get_channel_rule(L.Conv2D(1, 1)))


def test_a_plain_registration_stays_until_undone():
    class Twice(L.ReLU):
        pass

    registration = register_channel_rule(Twice, PassThrough())
    assert isinstance(get_channel_rule(Twice()), PassThrough)
    registration.undo()
    assert get_channel_rule(Twice()) is None


def test_layer_cost_overrides_the_rule_for_its_class_only():
    class Conv(L.Conv2D):
        pass

    conv_rule = get_channel_rule(L.Conv2D(1, 1))
    inputs = keras.Input((4, 4, 3))
    x = Conv(5, 1, name="sub")(L.Conv2D(3, 1, name="plain")(inputs))
    model = keras.Model(inputs, x)
    with register_channel_rule(Conv, conv_rule):
        # Conv2D's own formula: 4 * 4 * 5 outputs, 1 * 1 * 3 inputs each.
        assert model_cost(model).layers[1].macs == 16 * 5 * 3
        with register_layer_cost(Conv, lambda layer, ins, outs: 7):
            macs = {c.name: c.macs for c in model_cost(model).layers}
            assert macs == {"plain": 16 * 3 * 3, "sub": 7}
            with pytest.raises(ValueError, match="cost formula"):
                register_layer_cost(Conv, lambda layer, ins, outs: 8)
        assert model_cost(model).layers[1].macs == 16 * 5 * 3
    # Conv2D's shared rule was not touched.
    assert get_channel_rule(L.Conv2D(1, 1)) is conv_rule
    assert get_layer_cost(Conv(1, 1)) is None


def test_a_cost_only_class_stays_a_barrier():
    inputs = keras.Input((4,))
    x = L.Dense(3, name="d")(inputs)
    outputs = L.Dense(2)(Scale(name="scale")(x))
    model = keras.Model(inputs, outputs)
    with register_layer_cost(Scale, lambda layer, ins, outs: outs[0][-1]):
        assert get_channel_rule(model.get_layer("scale")) is None
        assert model_cost(model).macs == 4 * 3 + 3 + 3 * 2
        with pytest.warns(UserWarning, match="barrier"):
            filter_groups(model)


def test_max_pooling_has_one_rule():
    for cls in (L.MaxPooling1D, L.MaxPooling2D, L.MaxPooling3D):
        assert type(get_channel_rule(cls())) is MaxPoolingRule


def test_channel_graph_is_the_rule_context():
    graph = analyze(_scaled_model_without_custom())
    assert isinstance(graph, ChannelGraph) and isinstance(graph, RuleContext)
    public = {n for n in vars(RuleContext) if not n.startswith("_")}
    for name in public:
        assert callable(getattr(graph, name)) or name in ("node", "exact"), name


def _scaled_model_without_custom():
    inputs = keras.Input((4, 4, 3))
    x = L.Conv2D(6, 3, padding="same")(inputs)
    return keras.Model(inputs, L.Dense(2)(L.GlobalAveragePooling2D()(x)))


def test_rules_use_only_the_public_context():
    """Every `ctx.<name>` in the shipped rules is a `RuleContext` member."""
    public = {n for n in vars(RuleContext) if not n.startswith("_")}
    used = set()
    for path in sorted(RULES.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and isinstance(
                node.value, ast.Name
            ) and node.value.id == "ctx":
                used.add(node.attr)
                assert node.attr in public, f"{path.name}: ctx.{node.attr}"
    # The scan saw the rules' calls (it would pass vacuously otherwise).
    assert {"new_filters", "couple", "barrier", "annotate", "node"} <= used


def test_cross_task_reads_producers_from_the_rule():
    class Custom(L.Conv2D):
        pass

    inputs = keras.Input((6, 6, 3))
    x = Custom(4, 3, name="custom")(inputs)
    x = L.ReLU(name="relu")(x)
    x = L.Conv2D(5, 3, name="plain")(x)
    model = keras.Model(inputs, L.GlobalAveragePooling2D()(x))
    assert list(probe_points(model)) == ["plain"]
    with register_channel_rule(Custom, ProducerRule("filters")):
        probes = probe_points(model)
        assert list(probes) == ["custom", "plain"]
        # ReLU is pointwise (its rule says so): the probe reads after it.
        assert probes["custom"].point == "relu"


# The op classes the engine registers: those found through the public
# keras.ops functions (the fallback when Keras moves `keras.src.ops`) are
# the same classes.
@pytest.mark.parametrize(
    "module, name",
    [
        ("numpy", "Add"), ("numpy", "Multiply"), ("numpy", "Subtract"),
        ("nn", "Relu"), ("nn", "Sigmoid"), ("numpy", "Tanh"),
        ("numpy", "Concatenate"), ("numpy", "Split"), ("numpy", "Pad"),
        ("numpy", "Reshape"), ("core", "Cast"), ("numpy", "Matmul"),
        ("numpy", "Mean"), ("nn", "Softmax"), ("numpy", "Clip"),
        ("numpy", "Divide"),
    ],
)
def test_op_classes_fall_back_on_public_keras_ops(module, name):
    cls = _keras_private.op_class(module, name)
    assert cls is not None and cls.__name__ == name
    assert _keras_private._probe_op_class(name) is cls
    assert get_channel_rule(object.__new__(cls)) is not None or (
        name == "Matmul"  # priced, but a barrier
    )


def test_graph_nodes_is_the_one_walk():
    model = _scaled_model_without_custom()
    names = [n.operation.name for n in _keras_private.graph_nodes(model)]
    assert names == [layer.name for layer in model.layers[1:]]
    assert np.all([not n.is_input for n in _keras_private.graph_nodes(model)])


def _sigmoid_model():
    inputs = keras.Input((4, 4, 3))
    a = L.Conv2D(4, 1, name="a")(inputs)
    x = keras.ops.sigmoid(a)  # sigmoid(0) = 0.5: non-zero once removed
    return keras.Model(inputs, L.Dense(2)(L.Flatten()(x)))


def test_nonzero_names_and_their_live_aliases_agree():
    graph = analyze(_sigmoid_model())
    produced = graph.records["a"].out_slots[0]
    gated = graph.records["sigmoid"].out_slots[0]
    assert not graph.stays_nonzero(produced).any()
    assert graph.stays_nonzero(gated).all()
    for slots in (produced, gated):
        np.testing.assert_array_equal(
            graph.stays_nonzero(slots), graph.is_live(slots)
        )
    # with_nonzero / with_live: new slots with the flags set.
    flags = np.array([True, False, True, False])
    for method in (graph.with_nonzero, graph.with_live):
        marked = method(produced, flags, "test")
        assert not np.array_equal(marked, produced)
        np.testing.assert_array_equal(graph.stays_nonzero(marked), flags)
    # reset_nonzero / reset_live clear flags where told to.
    for method in (graph.reset_nonzero, graph.reset_live):
        reset = method(gated, flags)
        np.testing.assert_array_equal(graph.is_live(reset), flags)
    # mark_nonzero / mark_live flag slots in place.
    for method in (graph.mark_nonzero, graph.mark_live):
        fresh = graph.new_zeros(2)
        method(fresh, "test")
        assert graph.stays_nonzero(fresh).all()


def test_removed_roots_and_its_old_name():
    assert masking.zero_units is masking.removed_roots
    model = _scaled_model_without_custom()
    group = filter_groups(model)[0]
    keep = np.ones(group.size, bool)
    keep[[1, 4]] = False
    apply_group_mask(group, keep)
    graph = analyze(model)
    removed = masking.removed_roots(graph)
    assert len(removed) == 2
    np.testing.assert_array_equal(
        graph.keep_of(graph.records[group.layers[0]].out_slots[0], removed),
        keep,
    )


def test_apply_group_mask_checks_keep_once():
    group = filter_groups(_scaled_model_without_custom())[0]
    with pytest.raises(TypeError, match=r"`keep` must be a boolean array"):
        apply_group_mask(group, np.ones(group.size, int))
    with pytest.raises(ValueError, match=r"of shape \(6,\)"):
        apply_group_mask(group, np.ones(group.size + 1, bool))


def test_macs_reduction():
    def dense(units):
        return model_cost(keras.Sequential([keras.Input((4,)), L.Dense(units)]))

    assert macs_reduction(dense(10), dense(6)) == pytest.approx(0.4)
    assert macs_reduction(dense(10), dense(10)) == 0
    with pytest.raises(TypeError, match=r"`small` must be a ModelCost"):
        macs_reduction(dense(10), 24)
    empty = model_cost(keras.Sequential([keras.Input((4,)), L.ReLU()]))
    with pytest.raises(ValueError, match=r"Received: full.macs=0"):
        macs_reduction(empty, dense(6))


class PlusOne(L.Layer):
    def call(self, x):
        return x + 1.0


class PlusOneRule(ChannelRule):
    elementwise = True

    def propagate(self, ctx, layer, inputs, output_shapes):
        return [ctx.with_nonzero(inputs[0].slots, True, "x + 1 != 0")]


def test_a_rule_written_with_the_new_names_holds_its_producer():
    inputs = keras.Input((4, 4, 3))
    x = L.Conv2D(4, 1, name="producer")(inputs)
    x = L.Conv2D(3, 1, name="consumer")(PlusOne(name="plus")(x))
    model = keras.Model(inputs, L.Dense(2)(L.Flatten()(x)))
    with register_channel_rule(PlusOne, PlusOneRule()):
        groups = filter_groups(model, warn=False)
    assert [g.layers for g in groups] == [("consumer",)]
    held = [h for h in groups.held_fixed() if "producer" in h.layers]
    assert held and "x + 1 != 0" in held[0].reason
