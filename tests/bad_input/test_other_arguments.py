"""Bad input to the optimizer wrapper, the pruning callback and schedules
and the pruning engine's entry points, and the settings that would
otherwise silently do nothing."""

import keras
import numpy as np
import pytest

from keras_dynfilt.callbacks import (
    ConstantSparsity,
    PolynomialDecay,
    SoftFilterPruning,
)
from keras_dynfilt.optimizers import LearningRateMultiplier, set_lr_multiplier
from keras_dynfilt.pruning import (
    apply_group_mask,
    apply_group_masks,
    compact,
    filter_groups,
    model_cost,
    register_layer_cost,
)
from tests.bad_input.table import (
    HUGE_FLOAT,
    INF,
    NAN,
    check_table,
    numeric,
)
from tests.pruning.builders import residual_model

L = keras.layers
MULTIPLIER = numeric("non_negative_float")


def _lr_multiplier(**kwargs):
    return LearningRateMultiplier(**{"inner_optimizer": "sgd", **kwargs})


def _set_lr_multiplier(**kwargs):
    return set_lr_multiplier(
        **{"target": keras.Variable(1.0), "multiplier": 2.0, **kwargs}
    )


def _polynomial(**kwargs):
    return PolynomialDecay(**{"initial_sparsity": 0.0, "final_sparsity": 0.5,
                              "begin_step": 0, "end_step": 10, **kwargs})


def _constant(**kwargs):
    return ConstantSparsity(**{"target_sparsity": 0.3, **kwargs})


# Steps count optimizer updates (int64): a huge step is valid.
STEP = numeric("non_negative_int", drop=("huge",))
SPARSITY = numeric("fraction")

TABLES = {
    _lr_multiplier: {
        "inner_optimizer": {
            "unknown": "no_such_optimizer", "none": None, "int": 5,
            "ftrl": keras.optimizers.Ftrl(),
            "nested": LearningRateMultiplier("sgd"),
        },
        "multipliers": {
            "int": 5, "string": "nddr", "list": [("nddr", 1.0)],
            "non_string_key": {5: 1.0}, "bad_regex": {"(": 1.0},
            **{
                f"value_{label}": {"nddr": value}
                for label, value in MULTIPLIER.items()
            },
        },
    },
    _set_lr_multiplier: {
        "target": {"int": 5, "none": None, "string": "kernel",
                   "unbuilt_layer": L.Dense(2)},
        "multiplier": MULTIPLIER,
    },
    SoftFilterPruning: {
        "pruning_rate": {
            **SPARSITY, "empty_dict": {}, "dict_bad_key": {5: 0.1},
            "dict_bad_value": {"a": NAN},
        },
        "criterion": {"unknown": "l3", "none": None, "int": 5},
        "frequency": numeric("positive_int", drop=("huge",)),
        "layers": {"int": 5, "list_of_ints": [5], "dict": {"a": 1}},
        "exclude": {"int": 5, "list_of_ints": [5]},
        "schedule": {"float": 0.3, "string": "constant"},
    },
    _constant: {
        "target_sparsity": SPARSITY,
        "begin_step": STEP,
        # -1 means "no end".
        "end_step": {
            **numeric("non_negative_int", drop=("huge", "negative")),
            "below_minus_one": -2,
        },
        "frequency": numeric("positive_int", drop=("huge",)),
    },
    _polynomial: {
        "initial_sparsity": SPARSITY,
        "final_sparsity": SPARSITY,
        "begin_step": {**STEP, "after_end": 11},
        "end_step": {**STEP, "equal_begin": 0},
        "power": numeric("positive_float"),
        "frequency": numeric("positive_int", drop=("huge",)),
    },
}


@pytest.mark.parametrize(
    "entry", list(TABLES), ids=[e.__name__.strip("_") for e in TABLES]
)
def test_bad_arguments_are_refused(entry):
    check_table(entry, TABLES[entry])


@pytest.fixture(scope="module")
def model():
    return residual_model()


def _masks():
    # The residual model's groups: {a, b} (8 units) and c (6 units).
    return {
        "index_array": np.arange(8), "float": np.ones(8, "float32"),
        "int_ones": np.ones(8, "int64"), "list_of_ints": [1] * 8,
        "none": None, "string": "a", "wrong_length": np.ones(3, bool),
        "two_dimensional": np.ones((8, 1), bool),
        "all_false": np.zeros(8, bool),
    }


def test_apply_group_mask_bad_input(model):
    group = filter_groups(model)[0]
    assert group.size == 8
    check_table(apply_group_mask, {"keep": _masks()}, group=group)
    check_table(
        apply_group_mask,
        {"group": {"none": None, "string": "a", "layer": model.layers[1],
                   "groups": filter_groups(model)}},
        keep=np.ones(8, bool),
    )


def test_apply_group_masks_bad_input(model):
    group = filter_groups(model)[0]
    masks = {f"group_{k}": {group: v} for k, v in _masks().items()}
    masks["not_a_dict"] = [np.ones(8, bool)]
    masks["layer_name_key"] = {"a": np.ones(8, bool)}
    masks["layer_key"] = {model.layers[1]: np.ones(8, bool)}
    check_table(apply_group_masks, {"masks": masks})


def test_compact_bad_masks(model):
    masks = {
        f"layer_{k}": {"a": v} for k, v in _masks().items()
        if k != "all_false"
    }
    masks["not_a_dict"] = [np.ones(8, bool)]
    masks["unknown_layer"] = {"zzz": np.ones(8, bool)}
    masks["group_index_array"] = {filter_groups(model)[0]: np.arange(8)}
    check_table(compact, {"masks": masks}, model=model)
    # Compact names what it refuses: the masked key, not just "masks".
    with pytest.raises(TypeError, match=r"masks\['a'\].*boolean.*int64"):
        compact(model, {"a": np.arange(8)})


def test_register_layer_cost_bad_input():
    class Custom(L.Layer):
        pass

    check_table(
        register_layer_cost,
        {"layer_cls": {"class_name": "Custom", "none": None,
                       "instance": Custom()}},
        fn=lambda layer, ins, outs: 0,
    )
    check_table(
        register_layer_cost,
        {"fn": {"int": 5, "none": None, "string": "lambda: 0"}},
        layer_cls=Custom,
    )


def test_model_cost_bad_input_shape(model):
    check_table(
        model_cost,
        {"input_shape": {
            "int": 8, "string": "8x8x3", "other_channels": (8, 8, 5),
            "other_size_of_a_fixed_model": (16, 16, 3), "zero": (8, 0, 3),
            "negative": (8, -8, 3), "float": (8.0, 8, 3), "rank_2": (8, 8),
            "none_dim": (8, None, 3), "bool": (8, 8, True),
            "two_shapes_for_one_input": [(8, 8, 3), (8, 8, 3)],
        }},
        model=model,
    )
    # A model with free spatial size: only the channels are fixed.
    inputs = keras.Input((None, None, 3))
    free = keras.Model(inputs, L.Conv2D(4, 3)(inputs))
    assert model_cost(free, (8, 8, 3)).macs == 6 * 6 * 4 * 27
    check_table(
        model_cost,
        {"input_shape": {"other_channels": (8, 8, 1), "zero": (0, 8, 3),
                         "huge_float": (HUGE_FLOAT, 8, 3), "inf": (INF, 8, 3)}},
        model=free,
    )


# -- settings that would silently do nothing ----------------------------


def test_lr_multiplier_pattern_matching_nothing_warns(model):
    optimizer = LearningRateMultiplier("sgd", {"nddr_typo": 10.0, "^a/": 2.0})
    with pytest.warns(UserWarning, match=r"'nddr_typo'.*match no variable"):
        optimizer.build(model.trainable_variables)
    assert optimizer.multiplier_for(model.get_layer("a").kernel) == 2.0


def _tiny_data(n=4):
    rng = np.random.default_rng(0)
    return rng.normal(size=(n, 8, 8, 3)), rng.normal(size=(n, 4))


def _fit(model, callback):
    model.compile(optimizer="sgd", loss="mse")
    x, y = _tiny_data()
    return model.fit(x, y, epochs=1, batch_size=4, verbose=0,
                     callbacks=[callback])


def test_sfp_warns_about_groups_too_small_to_lose_a_filter():
    model = residual_model()
    # floor(8 * 0.1) = floor(6 * 0.1) = 0: nothing would ever be pruned.
    with pytest.warns(UserWarning, match=r"too small.*a_b|too small.*\(8"):
        _fit(model, SoftFilterPruning(0.1))


def test_sfp_nan_criterion_is_an_error():
    model = residual_model()
    callback = SoftFilterPruning(
        0.3, criterion=lambda w: np.full(len(w), np.nan)
    )
    with pytest.raises(ValueError, match=r"`criterion` returned non-finite"):
        _fit(model, callback)
