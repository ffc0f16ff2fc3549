"""The template a new channel rule copies (docs/pruning.md, "Adding a layer
type"): a custom layer, its rule, and the four checks every rule passes.

Copy this file, replace `MyScale` / `MyScaleRule` and `make_model` by your
layer, its rule and a small model that uses it (a producer before it, a
consumer after it), and adapt the expected groups. It uses the public API
only.
"""

import math

import keras
import numpy as np
import pytest

from keras_dynfilt.pruning import (
    ChannelRule,
    WeightAxis,
    apply_group_mask,
    compact,
    filter_groups,
    model_cost,
    register_channel_rule,
)

L = keras.layers


# `compact` rebuilds layers from their configs, and `.keras` files name
# their classes: a custom layer must be serializable (as every layer is).
@keras.saving.register_keras_serializable(package="rule_template")
class MyScale(L.Layer):
    """The layer under test: multiplies channel `c` by its own weight."""

    def build(self, input_shape):
        self.scale = self.add_weight(
            shape=(input_shape[-1],), initializer="ones", name="scale"
        )

    def call(self, x):
        return x * self.scale


class MyScaleRule(ChannelRule):
    """Channel `c` in, channel `c` out; `scale[c]` follows the channel."""

    # It handles channels that stay non-zero when removed: `0 * s = 0`
    # keeps a removed channel zero, so the input's slots (and their
    # flags) pass on unchanged.
    elementwise = True

    def propagate(self, ctx, layer, inputs, output_shapes):
        return [inputs[0].slots]

    def weights(self, layer, in_slots, out_slots):
        # Sliced on compaction; not zeroed by masking (not a filter's own
        # parameter: the producer's zeroed filter already makes it 0).
        return {"scale": [WeightAxis(0, in_slots[0], zero=False)]}

    def macs(self, layer, input_shapes, output_shapes):
        return math.prod(output_shapes[0][1:])  # one per output element


@pytest.fixture(autouse=True)
def registered():
    # Scoped: the rule is known in this module's tests only.
    with register_channel_rule(MyScale, MyScaleRule()):
        yield


def make_model():
    inputs = keras.Input((8, 8, 3))
    x = L.Conv2D(8, 3, padding="same", name="conv")(inputs)
    x = MyScale(name="my_scale")(x)
    x = L.ReLU()(x)
    x = L.Conv2D(6, 3, name="consumer")(x)
    x = L.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, L.Dense(3, name="head")(x))


def masked_model(seed=0):
    """The model with random weights and 3 units of every group zeroed."""
    rng = np.random.default_rng(seed)
    model = make_model()
    for variable in model.weights:
        variable.assign(rng.normal(size=variable.shape).astype("float32"))
    for group in filter_groups(model):
        keep = np.ones(group.size, bool)
        keep[rng.choice(group.size, 3, replace=False)] = False
        apply_group_mask(group, keep)
    return model


def data(seed=1):
    return np.random.default_rng(seed).normal(size=(4, 8, 8, 3)).astype(
        "float32"
    )


def test_groups_are_found():
    groups = filter_groups(make_model())  # warns on a barrier: none here
    assert [(g.layers, g.size) for g in groups] == [
        (("conv",), 8), (("consumer",), 6)
    ]
    assert not groups.barriers


def test_masked_model_equals_compacted_model():
    model = masked_model()
    small = compact(model)
    assert small.get_layer("conv").filters == 5
    assert small.get_layer("my_scale").scale.shape == (5,)
    x = data()
    np.testing.assert_allclose(
        small.predict_on_batch(x), model.predict_on_batch(x),
        rtol=1e-5, atol=1e-5,
    )


def test_fewer_macs_priced_exactly():
    model = masked_model()
    small = compact(model)
    full, after = model_cost(model), model_cost(small)
    assert full.complete and after.complete  # the rule priced the layer
    macs = {c.name: c.macs for c in full.layers}
    assert macs["my_scale"] == 8 * 8 * 8
    assert after.macs < full.macs
    # The engine's prediction of the compacted model equals the real one.
    predicted = model_cost(model, compacted=True)
    assert (predicted.macs, predicted.params) == (
        after.macs, small.count_params()
    )


def test_compacted_model_reloads_in_safe_mode(tmp_path):
    small = compact(masked_model())
    path = str(tmp_path / "small.keras")
    small.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    x = data()
    np.testing.assert_array_equal(
        loaded.predict_on_batch(x), small.predict_on_batch(x)
    )
