"""Models written the way model libraries write backbones.

Functional subclasses of `keras.Model` (top-level and used as a layer),
layers whose name changes through their config or is missing from it, and
a network with an opaque custom block: the engine walks what has a graph,
compacts by graph position, and says what it could not price.
"""

import contextlib
import math
import warnings

import keras
import numpy as np
import pytest
from keras import ops

from keras_dynfilt.callbacks import SoftFilterPruning
from keras_dynfilt.pruning import (
    compact,
    filter_groups,
    get_channel_rule,
    model_cost,
    print_cost,
    register_channel_rule,
    register_layer_cost,
)
from tests.pruning.builders import (
    max_relative_difference,
    random_inputs,
    randomize,
    run,
    zero_random_units,
)

L = keras.layers
PACKAGE = "test_backbones"
# Built with zeros (every test randomizes the weights): random initializers
# of each new shape take seconds to compile on JAX, at build and at load.
ZEROS = {"kernel_initializer": "zeros"}
register = keras.saving.register_keras_serializable(package=PACKAGE)


def _graph(inputs, width):
    """A residual stage and a convolution: two groups when nested."""
    a = L.Conv2D(width, 3, padding="same", name="stage_a", **ZEROS)(inputs)
    a = L.BatchNormalization(name="stage_bn")(a)
    b = L.Conv2D(width, 1, name="stage_b", **ZEROS)(inputs)
    x = L.ReLU(name="stage_relu")(L.Add(name="stage_add")([a, b]))
    x = L.Conv2D(width, 3, padding="same", name="c", **ZEROS)(x)
    return L.ReLU(name="c_relu")(L.BatchNormalization(name="c_bn")(x))


@register
class ConfigBackbone(keras.Model):
    """Keras-hub style: constructor arguments in its config, a registered
    `from_config` (rebuilding it gives the original widths)."""

    def __init__(self, width=6, **kwargs):
        inputs = keras.Input((8, 8, 3), name="image")
        super().__init__(inputs, _graph(inputs, width), **kwargs)
        self.width = width

    def get_config(self):
        return {"name": self.name, "trainable": self.trainable,
                "width": self.width}

    @classmethod
    def from_config(cls, config):
        return cls(**config)


class AutoBackbone(keras.Model):
    """No config methods, not registered (Keras's automatic config)."""

    def __init__(self, width=6, **kwargs):
        inputs = keras.Input((8, 8, 3), name="image")
        super().__init__(inputs, _graph(inputs, width), **kwargs)
        self.width = width


@register
class GraphBackbone(keras.Model):
    """A functional constructor: its config lists its layers, so Keras's
    `Model.from_config` rebuilds it as its own class."""

    def __init__(self, inputs, outputs, name=None, **kwargs):
        super().__init__(inputs, outputs, name=name, **kwargs)

    @classmethod
    def create(cls, width=6, name="bb"):
        inputs = keras.Input((8, 8, 3), name="image")
        return cls(inputs, _graph(inputs, width), name=name)

    def stage_names(self):
        return [layer.name for layer in self.layers if "stage" in layer.name]


@register
class TaggedBackbone(keras.Model):
    """A functional constructor plus its own config entry and a registered
    `from_config`: rebuilt as its own class, the entry kept."""

    def __init__(self, *args, tag="v1", **kwargs):
        super().__init__(*args, **kwargs)
        self.tag = tag

    def get_config(self):
        return {**super().get_config(), "tag": self.tag}

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        tag = config.pop("tag")
        model = super().from_config(config, custom_objects=custom_objects)
        model.tag = tag
        return model


@register
class Stack(keras.Sequential):
    """A Sequential subclass that builds its own layers: its inherited
    `from_config` adds the config's layers to a fresh default stack."""

    def __init__(self, width=6, **kwargs):
        super().__init__(
            [keras.Input((8, 8, 3)), L.Conv2D(width, 3, name="s1", **ZEROS),
             L.BatchNormalization(name="sbn"), L.ReLU(name="srelu"),
             L.Conv2D(width, 1, name="s2", **ZEROS)],
            **kwargs,
        )


@register
class OverridingBackbone(GraphBackbone):
    """Builds a graph, then computes something else in `call`."""

    def call(self, inputs, training=None, mask=None):
        return 2.0 * super().call(inputs, training=training, mask=mask)


class Handwritten(keras.Model):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.conv = L.Conv2D(4, 3, **ZEROS)
        self.head = L.Dense(2, **ZEROS)

    def call(self, x):
        return self.head(ops.mean(self.conv(x), axis=(1, 2)))


@register
class RenamingConv(L.Conv2D):
    """Appends `_0` to its name: every config round trip renames it."""

    def __init__(self, *args, name=None, **kwargs):
        name = None if name is None else f"{name}_0"
        super().__init__(*args, name=name, **kwargs)


@register
class NamelessConv(L.Conv2D):
    """Leaves `name` out of its config."""

    def get_config(self):
        config = super().get_config()
        del config["name"]
        return config


@register
class ChannelMix(L.Layer):
    """A custom block the engine knows nothing about (mixes channels)."""

    def build(self, input_shape):
        channels = input_shape[-1]
        self.kernel = self.add_weight(
            shape=(channels, channels), initializer="zeros"
        )

    def call(self, x):
        return ops.tanh(ops.matmul(x, self.kernel))

    def compute_output_shape(self, input_shape):
        return input_shape


def _conv_macs(layer, ins, outs):
    return math.prod(outs[0][1:]) * math.prod(layer.kernel_size) * ins[0][-1]


@pytest.fixture(autouse=True, scope="module")
def _conv_subclass_rules():
    """The Conv2D subclasses get Conv2D's rule and a cost formula for this
    module's tests only (scoped registration, undone on exit)."""
    with contextlib.ExitStack() as stack:
        for cls in (RenamingConv, NamelessConv):
            stack.enter_context(
                register_channel_rule(cls, get_channel_rule(L.Conv2D(1, 1)))
            )
            stack.enter_context(register_layer_cost(cls, _conv_macs))
        yield


def _classifier(backbone, name="classifier"):
    inputs = keras.Input((8, 8, 3))
    x = L.GlobalAveragePooling2D(name="gap")(backbone(inputs))
    return keras.Model(inputs, L.Dense(3, name="head", **ZEROS)(x),
                       name=name)


def _network(first, name):
    inputs = keras.Input((8, 8, 3))
    x = L.ReLU(name="r1")(L.BatchNormalization(name="bn1")(first(inputs)))
    x = L.Conv2D(5, 3, padding="same", name="c2", **ZEROS)(x)
    x = L.GlobalAveragePooling2D(name="gap")(L.ReLU(name="r2")(x))
    return keras.Model(inputs, L.Dense(3, name="head", **ZEROS)(x),
                       name=name)


def opaque_network():
    inputs = keras.Input((8, 8, 3))
    x = L.Conv2D(6, 1, name="pre", **ZEROS)(inputs)
    x = ChannelMix(name="mix")(L.ReLU(name="pre_relu")(x))
    x = L.Conv2D(6, 3, padding="same", name="mid", **ZEROS)(x)
    x = L.Conv2D(4, 1, name="post", **ZEROS)(L.ReLU(name="mid_relu")(x))
    x = L.GlobalAveragePooling2D(name="gap")(x)
    head = L.Dense(3, name="head", **ZEROS)
    return keras.Model(inputs, head(x), name="opaque")


def _io(width=6):
    inputs = keras.Input((8, 8, 3), name="image")
    return inputs, _graph(inputs, width)


NESTED_GROUPS = ["bb/stage_a (+1 coupled)", "bb/c"]
# name: (builder, groups, rebuilt class, rebuilt as plain functional)
CASES = {
    "config_backbone": (lambda: ConfigBackbone(name="bb"),
                        ["stage_a (+1 coupled)"], "Functional", True),
    "auto_backbone": (lambda: AutoBackbone(name="bb"),
                      ["stage_a (+1 coupled)"], "Functional", True),
    "graph_backbone": (lambda: GraphBackbone.create(),
                       ["stage_a (+1 coupled)"], "GraphBackbone", False),
    "tagged_backbone": (
        lambda: TaggedBackbone(*_io(), tag="v2", name="bb"),
        ["stage_a (+1 coupled)"], "TaggedBackbone", False),
    "nested_config_backbone": (
        lambda: _classifier(ConfigBackbone(name="bb")), NESTED_GROUPS,
        "Functional", True),
    "nested_graph_backbone": (
        lambda: _classifier(GraphBackbone.create()), NESTED_GROUPS,
        "Functional", False),
    "nested_sequential_subclass": (
        lambda: _classifier(Stack(name="bb")), ["bb/s1", "bb/s2"],
        "Functional", True),
    "renaming_layer": (
        lambda: _network(
            RenamingConv(6, 3, padding="same", name="ren", **ZEROS),
            "renaming"), ["ren_0", "c2"], "Functional", False),
    "nameless_config": (
        lambda: _network(
            NamelessConv(6, 3, padding="same", name="nameless", **ZEROS),
            "nameless"), ["nameless", "c2"], "Functional", False),
    "opaque_block": (opaque_network, ["mid", "post"], "Functional", False),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_walked_masked_equals_compacted_and_reloads(name, tmp_path):
    builder, expected_groups, class_name, plain = CASES[name]
    model = randomize(builder())
    groups = filter_groups(model, warn=False)
    assert [g.name for g in groups] == expected_groups
    zero_random_units(model, seed=3)
    if plain:
        with pytest.warns(UserWarning, match=r"compact rebuilt these model "
                          r"subclasses as plain functional \(or Sequential\) "
                          r"models.*'bb' \("):
            small = compact(model)
    else:
        with warnings.catch_warnings():
            warnings.filterwarnings("error", "compact rebuilt")
            small = compact(model)
    assert type(small).__name__ == class_name and small.name == model.name
    x = random_inputs(model)
    expected = run(model, x)
    assert max_relative_difference(expected, run(small, x)) <= 1e-5
    assert small.count_params() < model.count_params()
    before = model_cost(model, warn=False)
    after = model_cost(small, warn=False)
    assert after.macs < before.macs
    assert after.unknown == before.unknown
    predicted = model_cost(model, compacted=True, warn=False)
    assert (predicted.macs, predicted.params) == (after.macs, after.params)
    path = tmp_path / f"{name}.keras"
    small.save(path)
    restored = keras.saving.load_model(path, safe_mode=True)
    assert type(restored).__name__ == class_name
    if class_name == "TaggedBackbone":  # its own config entry survives
        assert small.tag == restored.tag == "v2"
    np.testing.assert_allclose(
        run(restored, x), run(small, x), rtol=1e-6, atol=1e-6
    )


def test_nested_backbone_is_walked_not_a_barrier():
    model = _classifier(ConfigBackbone(name="bb"))
    assert filter_groups(model).barriers == []
    cost = model_cost(model)
    assert cost.complete
    names = [c.name for c in cost.layers]
    assert "bb/stage_a" in names and "bb/c" in names
    # stage_a 8*8*6*27, stage_b 8*8*6*3, c 8*8*6*54, two BNs 8*8*6, head
    assert cost.macs == 384 * (27 + 3 + 54 + 2) + 6 * 3
    assert cost.params == model.count_params()


def test_own_class_is_kept_nested_and_keeps_its_methods():
    model = randomize(_classifier(GraphBackbone.create()))
    zero_random_units(model, seed=2)
    small = compact(model)
    backbone = small.get_layer("bb")
    assert type(backbone) is GraphBackbone
    assert sorted(backbone.stage_names()) == [
        "stage_a", "stage_add", "stage_b", "stage_bn", "stage_relu"]
    assert backbone.get_layer("c").filters < 6


def test_renamed_and_nameless_layers_are_matched_by_position():
    model = randomize(
        _network(RenamingConv(6, 3, name="ren", **ZEROS), "renaming"))
    small = compact(model, {"ren_0": np.arange(6) != 1})
    (renamed,) = [la for la in small.layers if isinstance(la, RenamingConv)]
    assert renamed.name == "ren_0_0" and renamed.filters == 5
    np.testing.assert_array_equal(
        ops.convert_to_numpy(renamed.kernel),
        ops.convert_to_numpy(
            ops.take(model.get_layer("ren_0").kernel, [0, 2, 3, 4, 5], axis=3)
        ),
    )
    model = randomize(
        _network(NamelessConv(6, 3, name="nl", **ZEROS), "nameless"))
    assert "name" not in model.get_layer("nl").get_config()
    small = compact(model, {"nl": np.arange(6) < 4})
    (nameless,) = [la for la in small.layers if isinstance(la, NamelessConv)]
    assert nameless.filters == 4
    assert small.get_layer("c2").kernel.shape == (3, 3, 4, 5)


def _check_traced(model, x):
    """Masked == compacted for a model the engine had to trace."""
    randomize(model)
    zero_random_units(model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        small = compact(model)
    assert max_relative_difference(run(model, x), run(small, x)) <= 1e-5
    assert model_cost(small).macs < model_cost(model).macs
    return small


def test_models_with_a_handwritten_call_are_traced():
    # Once refused (no graph); now traced (tests/pruning/test_zoo_tracing.py).
    x = np.random.default_rng(0).normal(size=(2, 8, 8, 3)).astype("float32")
    model = Handwritten(name="hand")
    model(x)
    groups = filter_groups(model, warn=False)
    assert groups.traced[0].class_name == "Handwritten"
    assert [g.size for g in groups] == [4] and not groups.barriers
    _check_traced(model, x)
    inputs = keras.Input((8, 8, 3))
    overriding = OverridingBackbone(inputs, _graph(inputs, 4), name="ovr")
    groups = filter_groups(overriding, warn=False)
    assert groups and not groups.barriers
    assert type(_check_traced(overriding, x)) is not OverridingBackbone


def test_overriding_subclass_used_as_a_layer_is_traced():
    inputs = keras.Input((8, 8, 3))
    overriding = OverridingBackbone(inputs, _graph(inputs, 4), name="ovr")
    model = _classifier(overriding)
    groups = filter_groups(model, warn=False)
    assert [b.path for b in groups.traced] == ["ovr"]
    assert groups and not groups.barriers
    x = np.random.default_rng(0).normal(size=(2, 8, 8, 3)).astype("float32")
    _check_traced(model, x)


def test_incomplete_cost_warns_and_prints_the_uncounted_layers(capsys):
    model = opaque_network()
    with pytest.warns(UserWarning, match=(
        r"model_cost of 'opaque' is incomplete: No cost formula for 1 "
        r"layer\(s\) with weights, left out of the MACs total: mix "
        r"\(ChannelMix\)\. Register one with `keras_dynfilt\.pruning\."
        r"register_layer_cost`"
    )):
        cost = model_cost(model)
    assert cost.unknown == ["mix"] and not cost.complete
    assert cost.as_dict()["unknown"] == ["mix"]
    # pre 8*8*6*3, mid 8*8*6*54, post 8*8*4*6, head 4*3: mix not counted.
    assert cost.macs == 1152 + 20736 + 1536 + 12
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        print_cost(model)
    out = capsys.readouterr().out
    assert "total (incomplete)" in out
    assert "Incomplete total. No cost formula for 1 layer(s)" in out
    assert "mix (ChannelMix)" in out
    (row,) = [line for line in out.splitlines() if line.startswith("mix ")]
    assert row.split()[-1] == "?"
    assert model_cost(_classifier(ConfigBackbone(name="bb"))).complete


def _fit(model, callback):
    model.compile(
        "sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    )
    x = random_inputs(model, batch=8)
    y = np.arange(8) % 3
    return model.fit(x, y, epochs=1, batch_size=8, verbose=0,
                     callbacks=[callback]).history


def test_sfp_refuses_a_flops_fraction_over_an_incomplete_count():
    sfp = SoftFilterPruning(pruning_rate=0.34)
    with pytest.warns(UserWarning, match=(
        r"SoftFilterPruning does not log `flops_fraction`: the cost of model "
        r"'opaque' is incomplete\. No cost formula .*mix \(ChannelMix\)"
    )):
        history = _fit(randomize(opaque_network()), sfp)
    assert "flops_fraction" not in history
    assert history["sparsity"][0] > 0


def test_sfp_prunes_a_nested_subclass_backbone():
    model = randomize(_classifier(ConfigBackbone(name="bb")))
    sfp = SoftFilterPruning(pruning_rate=0.34)
    history = _fit(model, sfp)
    assert [g.name for g, _ in sfp.groups] == NESTED_GROUPS
    assert 0 < history["flops_fraction"][0] < 1
    with pytest.warns(UserWarning, match=r"compact rebuilt .*'bb' "
                      r"\(ConfigBackbone\)"):
        small = sfp.compact_model()
    x = random_inputs(model)
    assert max_relative_difference(run(model, x), run(small, x)) <= 1e-5
    assert model_cost(small).macs == pytest.approx(
        history["flops_fraction"][0] * model_cost(model).macs
    )
