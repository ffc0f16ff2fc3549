"""Argument checks shared by the model builders and layers."""

import numpy as np


def _is_int(value):
    return not isinstance(value, bool) and isinstance(
        value, (int, np.integer)
    )


def check_positive_int(value, name):
    """Raises unless `value` is an integer >= 1; returns it as int."""
    if not _is_int(value) or value < 1:
        raise ValueError(
            f"`{name}` must be a positive integer. Received: {name}={value!r}"
        )
    return int(value)


def check_num_classes(num_classes):
    """Raises unless `num_classes` is an integer >= 2; returns it as int."""
    if not _is_int(num_classes) or num_classes < 2:
        raise ValueError(
            "`num_classes` must be an integer >= 2. "
            f"Received: num_classes={num_classes!r}"
        )
    return int(num_classes)


def check_image_shape(input_shape):
    """Raises unless `input_shape` is (height, width, channels) of ints."""
    try:
        shape = tuple(input_shape)
    except TypeError:
        shape = None
    if (
        shape is None
        or len(shape) != 3
        or any(not _is_int(d) or d < 1 for d in shape)
    ):
        raise ValueError(
            "`input_shape` must be (height, width, channels) with positive "
            f"integers. Received: input_shape={input_shape!r}"
        )
    return tuple(int(d) for d in shape)
