import keras
import numpy as np
import pytest

from keras_dynfilt.layers import MFM, ChannelPadding
from keras_dynfilt.pruning import (
    compact,
    model_cost,
    print_cost,
    register_layer_cost,
)
from tests.pruning.builders import (
    BUILDERS,
    nested_model,
    randomize,
    shared_layer_model,
    zero_random_units,
)

L = keras.layers


def single_layer_cost(layer, input_shape):
    inputs = keras.Input(input_shape)
    model = keras.Model(inputs, layer(inputs))
    (cost,) = [c for c in model_cost(model).layers if c.name == layer.name]
    return cost


@pytest.mark.parametrize(
    "layer, input_shape, params, macs",
    [
        # 3x3 conv, 4 -> 8 channels, valid padding: 6x6 outputs
        (L.Conv2D(8, 3), (8, 8, 4), 3 * 3 * 4 * 8 + 8, 6 * 6 * 8 * 3 * 3 * 4),
        # stride 2, same padding: 4x4 outputs, no bias
        (L.Conv2D(8, 3, strides=2, padding="same", use_bias=False),
         (8, 8, 4), 3 * 3 * 4 * 8, 4 * 4 * 8 * 3 * 3 * 4),
        # grouped: each filter reads 4 / 2 channels
        (L.Conv2D(8, 1, groups=2), (5, 5, 4), 2 * 8 + 8, 5 * 5 * 8 * 2),
        (L.Conv1D(6, 5), (20, 3), 5 * 3 * 6 + 6, 16 * 6 * 5 * 3),
        (L.Conv3D(2, 3), (5, 5, 5, 1), 27 * 2 + 2, 27 * 2 * 27),
        (L.DepthwiseConv2D(3, depth_multiplier=2, padding="same"),
         (6, 6, 4), 3 * 3 * 4 * 2 + 8, 6 * 6 * 8 * 9),
        (L.SeparableConv2D(5, 3, padding="same"), (6, 6, 4),
         9 * 4 + 4 * 5 + 5, 6 * 6 * 4 * 9 + 6 * 6 * 4 * 5),
        (L.Conv2DTranspose(3, 2, strides=2), (4, 4, 6),
         2 * 2 * 3 * 6 + 3, 4 * 4 * 6 * 2 * 2 * 3),
        (L.Dense(7), (5,), 5 * 7 + 7, 35),
        (L.Dense(7), (3, 5), 5 * 7 + 7, 3 * 35),  # applied per time step
        (L.BatchNormalization(), (4, 4, 3), 4 * 3, 4 * 4 * 3),
        (L.ReLU(), (4, 4, 3), 0, 0),
        (L.MaxPooling2D(), (4, 4, 3), 0, 0),
        (MFM(), (4, 4, 6), 0, 0),
        (ChannelPadding((0, 3)), (4, 4, 3), 0, 0),
    ],
)
def test_hand_counts(layer, input_shape, params, macs):
    cost = single_layer_cost(layer, input_shape)
    assert (cost.params, cost.macs) == (params, macs)


def test_totals_nested_shared_and_input_shape():
    model = nested_model()
    cost = model_cost(model)
    names = [c.name for c in cost.layers]
    assert "inner/inner_conv" in names and "block/seq_conv" in names
    assert cost.params == model.count_params()
    assert cost.macs == sum(c.macs for c in cost.layers)
    shared = model_cost(shared_layer_model())
    calls = [c for c in shared.layers if c.name == "shared"]
    assert [c.params for c in calls] == [3 * 3 * 2 * 4 + 4, 0]
    assert calls[0].macs == calls[1].macs == 5 * 5 * 4 * 18


def test_input_shape_for_fully_convolutional_models():
    inputs = keras.Input((None, None, 3))
    model = keras.Model(inputs, L.Conv2D(4, 3, padding="same")(inputs))
    assert model_cost(model, (10, 10, 3)).macs == 10 * 10 * 4 * 27
    assert model_cost(model, (20, 10, 3)).macs == 2 * 10 * 10 * 4 * 27
    with pytest.raises(ValueError, match=r"`input_shape` must give a fully"):
        model_cost(model)


def test_unknown_layers_and_registration():
    class Scale(L.Layer):
        def build(self, input_shape):
            self.w = self.add_weight(shape=(input_shape[-1],))

        def call(self, x):
            return x * self.w

    inputs = keras.Input((4,))
    model = keras.Model(inputs, Scale(name="scale")(L.Dense(3)(inputs)))
    with pytest.warns(UserWarning, match=r"incomplete: No cost formula "
                      r"for 1 layer\(s\).*scale \(Scale\)"):
        cost = model_cost(model)
    assert cost.unknown == ["scale"] and cost.macs == 12
    assert not cost.complete and "total (incomplete)" in cost.table()
    assert "No cost formula" in cost.table()
    register_layer_cost(Scale, lambda layer, ins, outs: outs[0][-1])
    assert model_cost(model).macs == 12 + 3


def test_table_is_readable(capsys):
    print_cost(nested_model())
    out = capsys.readouterr().out
    assert "inner/inner_conv" in out and "total" in out
    assert "multiply-adds" in out


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_compacted_cost_prices_compact_without_building_it(name):
    model = randomize(BUILDERS[name]())
    zero_random_units(model, seed=7)
    predicted = model_cost(model, compacted=True)
    actual = model_cost(compact(model))
    assert predicted.macs == actual.macs
    assert predicted.params == actual.params == compact(model).count_params()
    assert [c.macs for c in predicted.layers] == [
        c.macs for c in actual.layers
    ]


def _pricer_models():
    from tests.pruning import zoo

    models = {name: build for name, build in BUILDERS.items()}
    models["zoo_residual_blocks"] = zoo.residual_blocks_model
    models["zoo_inverted_residual"] = zoo.inverted_residual_model
    models["zoo_attention"] = zoo.attention_model
    models["mobilenet_v2"] = lambda: keras.applications.MobileNetV2(
        input_shape=(32, 32, 3), alpha=0.35, weights=None, classes=5
    )
    return models


@pytest.mark.parametrize("name", sorted(_pricer_models()))
def test_mask_pricer_matches_model_cost_with_masks(name):
    """The pruner's fast pricing gives `model_cost(masks=...)`'s totals."""
    from keras_dynfilt.pruning import filter_groups
    from keras_dynfilt.pruning.cost import _MaskPricer

    model = _pricer_models()[name]()
    groups = filter_groups(model, warn=False)
    pricer = _MaskPricer(groups[0].graph)
    rng = np.random.default_rng(3)
    full = model_cost(model, warn=False)
    assert pricer.price(pricer.removed([])) == (full.macs, full.params)
    for _ in range(4):
        masks, removed = {}, []
        for group in groups:
            keep = rng.random(group.size) < rng.uniform(0.2, 0.9)
            keep[rng.integers(group.size)] = True
            masks[group] = keep
            removed.append(group._roots[~keep])
        expected = model_cost(model, masks=masks, warn=False)
        got = pricer.price(pricer.removed(np.concatenate(removed)))
        assert got == (expected.macs, expected.params)
        if sum(len(r) for r in removed):
            assert got[1] < full.params
