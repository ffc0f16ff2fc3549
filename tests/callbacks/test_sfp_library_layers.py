"""Soft Filter Pruning on models built from this library's own layers.

The soft mask zeroes the producers' kernel entries of the ranked units,
at the positions the layer's channel rule gives
(`ChannelRule.filter_kernel_positions`): NDDR's filters span every task's
kernel, a FilterGenerator filter owns `repository_size` coefficient
columns.
"""

import keras
import numpy as np
import pytest

from keras_dynfilt.callbacks import SoftFilterPruning
from keras_dynfilt.layers import (
    MFM,
    NDDR,
    CrossStitch,
    FilterGenerator,
    WSoftmaxHead,
)
from keras_dynfilt.pruning import compact, filter_groups, get_channel_rule
from keras_dynfilt.pruning.graph import _variables

L = keras.layers


def nddr_model():
    inputs = keras.Input((6, 6, 3))
    a = L.Conv2D(4, 3, padding="same", name="a")(inputs)
    b = L.Conv2D(6, 3, padding="same", name="b")(inputs)
    a, b = NDDR(name="nddr")([a, b])
    a = L.Conv2D(5, 1, name="a2")(a)
    b = L.Conv2D(5, 1, name="b2")(b)
    x = L.Concatenate()([L.GlobalAveragePooling2D()(a),
                         L.GlobalAveragePooling2D()(b)])
    return keras.Model(inputs, L.Dense(3, name="head")(x))


def cross_stitch_model():
    inputs = keras.Input((6, 6, 3))
    a = L.Conv2D(6, 3, padding="same", name="a")(inputs)
    b = L.Conv2D(6, 3, padding="same", name="b")(inputs)
    a, b = CrossStitch(per_channel=True, name="stitch")([a, b])
    a = L.Conv2D(5, 1, name="a2")(L.ReLU()(a))
    b = L.Conv2D(5, 1, name="b2")(L.ReLU()(b))
    x = L.Add()([L.GlobalAveragePooling2D()(a),
                 L.GlobalAveragePooling2D()(b)])
    return keras.Model(inputs, L.Dense(3, name="head")(x))


def filter_generator_model():
    image = keras.Input((6, 6, 3))
    features = keras.Input((5,))
    z = L.Dense(4, name="z")(features)
    x = FilterGenerator(
        filters=4, kernel_size=3, repository_size=3, padding="same",
        name="fg",
    )([image, z])
    x = L.Conv2D(5, 1, name="c")(L.ReLU()(x))
    x = L.GlobalAveragePooling2D()(x)
    return keras.Model([image, features], L.Dense(3, name="head")(x))


def mfm_model():
    inputs = keras.Input((6, 6, 3))
    x = MFM(name="mfm")(L.Conv2D(8, 3, padding="same", name="a")(inputs))
    x = L.Conv2D(6, 3, padding="same", name="c")(x)
    x = L.GlobalAveragePooling2D()(L.ReLU()(x))
    return keras.Model(inputs, L.Dense(3, name="head")(x))


def wsoftmax_model():
    inputs = keras.Input((6, 6, 3))
    x = L.Conv2D(6, 3, padding="same", name="a")(inputs)
    x = L.GlobalAveragePooling2D()(L.ReLU()(x))
    x = L.Dense(8, name="embed")(x)
    return keras.Model(inputs, WSoftmaxHead(3, name="head")(x))


BUILDERS = {
    "nddr": nddr_model,
    "cross_stitch": cross_stitch_model,
    "filter_generator": filter_generator_model,
    "mfm": mfm_model,
    "wsoftmax_head": wsoftmax_model,
}


def inputs_for(model, n=8, seed=0):
    rng = np.random.default_rng(seed)
    found = [
        rng.normal(size=(n,) + tuple(x.shape[1:])).astype("float32")
        for x in model.inputs
    ]
    return found if len(found) > 1 else found[0]


def _numpy(variable):
    return keras.ops.convert_to_numpy(variable.value).copy()


def soft_masked(model, rate, criterion="l2"):
    """Runs the callback's first (soft) mask without training."""
    sfp = SoftFilterPruning(pruning_rate=rate, criterion=criterion)
    sfp.set_model(model)
    sfp.set_params({"epochs": 3, "steps": 1, "verbose": 0})
    sfp.on_train_begin()
    sfp.on_epoch_begin(0)
    return sfp


def expected_zero_positions(groups, masks):
    """`{(layer_path, weight_key): {axis: positions}}` the soft mask zeroes,
    from the rules' `filter_kernel_positions` (the single source of truth).
    """
    zeroed = {}
    for group, keep in zip(groups, masks):
        removed = {
            atom for u, unit in enumerate(group.units) if not keep[u]
            for atom in unit
        }
        for path in group.layers:
            layer = group.graph.layers[path]
            rule = get_channel_rule(layer)
            for key, axis, owner in rule.filter_kernel_positions(layer):
                positions = {
                    p for p, f in enumerate(owner) if (path, int(f)) in removed
                }
                zeroed.setdefault((path, key), {}).setdefault(
                    axis, set()
                ).update(positions)
    return zeroed


def check_soft_mask(model, rate, criterion="l2"):
    graph_before = filter_groups(model, warn=False).graph
    before = {
        (path, key): _numpy(v)
        for path, layer in graph_before.layers.items()
        for key, v in _variables(layer).items()
    }
    sfp = soft_masked(model, rate, criterion)
    groups = [g for g, _ in sfp.groups]
    expected = expected_zero_positions(groups, sfp.masks)
    assert any(not k.all() for k in sfp.masks), "nothing was ranked out"
    for path, layer in graph_before.layers.items():
        for key, variable in _variables(layer).items():
            after = _numpy(variable)
            old = before[(path, key)]
            axes = expected.get((path, key), {})
            want_zero = np.zeros(old.shape, bool)
            for axis, positions in axes.items():
                index = [slice(None)] * old.ndim
                index[axis] = sorted(positions)
                want_zero[tuple(index)] = True
            # Exactly the ranked units' kernel positions are zero now ...
            np.testing.assert_array_equal(
                after[want_zero], 0.0, err_msg=f"{path}/{key} not zeroed"
            )
            # ... and every other weight is untouched.
            np.testing.assert_array_equal(
                after[~want_zero], old[~want_zero],
                err_msg=f"{path}/{key} changed outside the ranked units",
            )
    return sfp


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_soft_mask_zeroes_exactly_the_rules_positions(name):
    keras.utils.set_random_seed(0)
    check_soft_mask(BUILDERS[name](), rate=0.5)


def test_filter_generator_soft_mask_zeroes_each_filters_columns():
    # Filter i owns coefficient columns 3i .. 3i + 2 (repository_size 3).
    keras.utils.set_random_seed(1)
    model = filter_generator_model()
    sfp = soft_masked(model, rate=0.5)
    group = next(g for g, _ in sfp.groups if "fg" in g.layers)
    keep = sfp.masks[[g for g, _ in sfp.groups].index(group)]
    removed = [i for (_, i), k in zip((u[0] for u in group.units), keep)
               if not k]
    kernel = _numpy(model.get_layer("fg").coefficient_kernel)
    zero_columns = np.flatnonzero(~np.any(kernel != 0, axis=0))
    want = sorted(3 * i + j for i in removed for j in range(3))
    assert zero_columns.tolist() == want


def test_nddr_in_a_prunable_group_soft_masks():
    keras.utils.set_random_seed(2)
    model = nddr_model()
    sfp = soft_masked(model, rate=0.5)  # IndexError before the fix
    assert any("nddr" in g.layers for g, _ in sfp.groups)


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_fit_then_compact_is_exact(name):
    keras.utils.set_random_seed(3)
    model = BUILDERS[name]()
    model.compile("sgd", "mse")
    x = inputs_for(model, n=16)
    y = np.zeros((16, 3), "float32")
    sfp = SoftFilterPruning(pruning_rate=0.4)
    model.fit(x, y, epochs=2, batch_size=8, callbacks=[sfp], verbose=0)
    small = compact(model)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(small(x)),
        keras.ops.convert_to_numpy(model(x)),
        atol=1e-4,
    )
    assert small.count_params() < model.count_params()
