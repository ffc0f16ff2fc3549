"""Every constructor argument of every public layer, given bad values."""

import keras
import numpy as np
import pytest

from keras_dynfilt.layers import (
    MFM,
    NDDR,
    ChannelPadding,
    CrossStitch,
    DimensionReduction,
    FilterGenerator,
    WSoftmaxHead,
)
from tests.bad_input.table import (
    HUGE_INT,
    INF,
    NAN,
    boolean,
    check_table,
    identifier,
    numeric,
)


def mfm(**kwargs):
    # `axis` is checked against the input's rank when the layer is called.
    return MFM(**kwargs)(np.ones((1, 2, 2, 4), "float32"))


def channel_padding(**kwargs):
    return ChannelPadding(**kwargs)


def filter_generator(**kwargs):
    return FilterGenerator(**{"filters": 2, "kernel_size": 3,
                              "repository_size": 2, **kwargs})


def dimension_reduction(**kwargs):
    return DimensionReduction(**{"units": 4, **kwargs})


def wsoftmax_head(**kwargs):
    return WSoftmaxHead(**{"num_classes": 3, **kwargs})


TUPLE_2 = {
    **numeric("positive_int"),
    "tuple_of_one": (1,), "tuple_with_zero": (1, 0), "tuple_of_floats":
    (1.0, 1.0), "tuple_of_three": (1, 1, 1),
}

TABLES = {
    mfm: {
        "axis": {"string": "-1", "float": -1.0, "bool": True, "none": None,
                 "zero": 0, "out_of_range": 4, "negative_out_of_range": -5,
                 "inf": INF, "nan": NAN, "huge": HUGE_INT},
    },
    channel_padding: {
        "padding": {
            "string": "1", "float": 1.5, "bool": True, "none": None,
            "negative": -1, "inf": INF, "nan": NAN, "huge": HUGE_INT,
            "tuple_of_one": (1,), "tuple_negative": (1, -1),
            "tuple_huge": (0, HUGE_INT),
        },
    },
    CrossStitch: {
        "per_channel": boolean(),
        "alpha": numeric("unit_interval"),
        "beta": numeric("unit_interval"),
        "lr_multiplier": numeric("positive_float"),
    },
    NDDR: {
        "init": {**identifier("initializer"), "none": None},
        "alpha": numeric("unit_interval"),
        "beta": numeric("unit_interval"),
        "activation": identifier("activation"),
        "use_batch_norm": boolean(),
        "batch_norm_momentum": numeric("fraction"),
        "batch_norm_epsilon": numeric("positive_float"),
        "batch_norm_synchronized": boolean(),
        "kernel_regularizer": identifier("regularizer"),
        "lr_multiplier": numeric("positive_float"),
    },
    dimension_reduction: {
        "units": numeric("positive_int"),
        "filters": numeric("positive_int", allow_none=True),
        "negative_slope": numeric("non_negative_float"),
        "momentum": numeric("fraction"),
        "kernel_initializer": identifier("initializer"),
        "kernel_regularizer": identifier("regularizer"),
    },
    filter_generator: {
        "filters": numeric("positive_int"),
        "kernel_size": TUPLE_2,
        "repository_size": numeric("positive_int"),
        "strides": TUPLE_2,
        "dilation_rate": TUPLE_2,
        "padding": {"unknown": "full", "int": 5, "none": None, "bool": True},
        "activation": identifier("activation"),
        "use_bias": boolean(),
        "use_coefficient_bias": boolean(),
        "implementation": {"unknown": "fast", "none": None, "int": 5},
        **{
            argument: identifier("initializer")
            for argument in (
                "repository_initializer", "coefficient_initializer",
                "coefficient_bias_initializer", "bias_initializer",
            )
        },
        **{
            argument: identifier("regularizer")
            for argument in (
                "repository_regularizer", "coefficient_regularizer",
                "bias_regularizer", "activity_regularizer",
            )
        },
        **{
            argument: identifier("constraint")
            for argument in (
                "repository_constraint", "coefficient_constraint",
                "bias_constraint",
            )
        },
    },
    wsoftmax_head: {
        "num_classes": numeric("positive_int", extra={"one": 1}),
        "alpha": numeric(
            "non_negative_float",
            # alpha² overflows float32 (1e20) or float64 (1e200).
            extra={"square_overflows_float32": 1e20, "float64_nan": 1e200},
        ),
        "kernel_initializer": identifier("initializer"),
        "kernel_regularizer": identifier("regularizer"),
        "kernel_constraint": identifier("constraint"),
    },
}



@pytest.mark.parametrize(
    "entry", list(TABLES), ids=[e.__name__ for e in TABLES]
)
def test_bad_arguments_are_refused(entry):
    check_table(entry, TABLES[entry])


def test_valid_arguments_still_build():
    # The positive control of every table: the defaults construct.
    for entry in TABLES:
        entry()
    assert keras.ops.shape(mfm()) == (1, 2, 2, 2)
