"""Every argument of the model builders, given bad values."""

import keras
import pytest

from keras_dynfilt.models import (
    conv_stage,
    filter_generation_network,
    light_cnn,
    nddr_network,
    resnet_cifar,
)
from tests.bad_input.table import (
    HUGE_INT,
    INF,
    NAN,
    boolean,
    check_table,
    name_argument,
    numeric,
)

INPUT_SHAPE = {
    "none": None, "int": 28, "string": "28x28", "rank_2": (28, 28),
    "rank_4": (1, 28, 28, 1), "zero": (28, 0, 1), "negative": (28, 28, -1),
    "float": (28.0, 28, 1), "bool": (28, 28, True), "inf": (INF, 28, 1),
    "huge": (HUGE_INT, 28, 1),
}
NUM_CLASSES = numeric("positive_int", extra={"one": 1})


def _heads(n=2):
    return [
        keras.Sequential([keras.layers.GlobalAveragePooling2D(),
                          keras.layers.Dense(3)])
        for _ in range(n)
    ]


def _nddr_network(**kwargs):
    args = {"input_shape": (8, 8, 1), "stages": [conv_stage(4, name="s1")],
            "heads": _heads(), **kwargs}
    return nddr_network(**args)


def _resnet(**kwargs):
    return resnet_cifar(**{"input_shape": (8, 8, 3), **kwargs})


def _light_cnn(**kwargs):
    return light_cnn(**{"input_shape": (8, 8, 1), "num_classes": 3,
                        "width_multiplier": 0.05, **kwargs})


def _filter_generation(**kwargs):
    return filter_generation_network(
        **{"input_shape": (28, 28, 1), "num_classes": 3,
           "encoder_filters": 2, **kwargs}
    )


def _conv_stage(**kwargs):
    return conv_stage(**{"filters": 4, **kwargs})


TABLES = {
    _resnet: {
        "depth": numeric("positive_int", extra={"not_6n_plus_2": 21,
                                                "six_n_plus_2_huge":
                                                6 * HUGE_INT + 2}),
        "num_classes": NUM_CLASSES,
        "input_shape": INPUT_SHAPE,
        "shortcut": {"unknown": "C", "lowercase": "a", "none": None,
                     "bool": True, "list": ["A"]},
        "weight_decay": numeric("non_negative_float", allow_none=True),
        "name": name_argument(),
    },
    _light_cnn: {
        "input_shape": INPUT_SHAPE,
        "num_classes": NUM_CLASSES,
        "variant": {"unknown": "29", "none": None, "bool": True,
                    "float": 9.5, "list": ["9"]},
        "width_multiplier": numeric("positive_float"),
        "dropout": numeric("fraction"),
        "name": name_argument(),
    },
    _filter_generation: {
        "input_shape": {**INPUT_SHAPE, "too_small": (8, 8, 1)},
        "num_classes": NUM_CLASSES,
        "encoder_filters": numeric("positive_int"),
        "repository_size": numeric("positive_int"),
        "filters": {"empty": (), "zero": (5, 0), "negative": (5, -1),
                    "none": None, "string": "5", "float": (5.0,),
                    "bool": (True,)},
        "kernel_size": numeric("positive_int"),
        "filter_generation": boolean(),
        "negative_slope": numeric("non_negative_float"),
        "batch_norm_momentum": numeric("fraction"),
        "name": name_argument(),
    },
    _conv_stage: {
        "filters": numeric("positive_int"),
        "num_convs": numeric("positive_int"),
        "kernel_size": {**numeric("positive_int"), "tuple_zero": (3, 0)},
        "pool": boolean(),
        "batch_norm": boolean(),
        "batch_norm_momentum": numeric("fraction"),
        "name": name_argument(),
    },
    _nddr_network: {
        "input_shape": INPUT_SHAPE,
        "stages": {"none": None, "int": 5, "string": "s1", "empty": [],
                   "not_callable": [5]},
        "heads": {"none": None, "int": 5, "empty": [], "one_head":
                  _heads(1), "not_callable": [5, 6]},
        "fusion": {"unknown": "concat", "none": None, "int": 5,
                   "bool": True},
        "shortcut": boolean(),
        "nddr_kwargs": {"int": 5, "string": "lr", "list": [1.0],
                        "bad_value": {"alpha": NAN}},
        "cross_stitch_kwargs": {"int": 5, "string": "x"},
        "shortcut_lr_multiplier": numeric("positive_float",
                                          allow_none=True),
        "task_names": {"int": 5, "string": "ab", "one": ["a"],
                       "duplicates": ["a", "a"]},
        "name": name_argument(),
    },
}


@pytest.mark.parametrize(
    "entry", list(TABLES), ids=[e.__name__.strip("_") for e in TABLES]
)
def test_bad_arguments_are_refused(entry):
    check_table(entry, TABLES[entry])


def test_shared_stages_bad_values():
    check_table(
        _nddr_network,
        {"shared_stages": numeric("positive_int", allow_none=True,
                                  extra={"more_than_stages": 2})},
        fusion="shared",
    )


def test_shortcut_channels_bad_values():
    check_table(
        _nddr_network,
        {"shortcut_channels": {"zero": 0, "negative": -1, "float": 2.5,
                               "bool": True, "string": "4", "inf": INF,
                               "wrong_length": [4]}},
        shortcut=True,
    )


def test_valid_arguments_still_build():
    # The positive control, on the cheapest builder (tests/models build the
    # others with these defaults).
    model = _nddr_network()
    assert [tuple(o.shape) for o in model.outputs] == [(None, 3)] * 2
    assert callable(_conv_stage())
