"""Turns ordinary `(x, y)` classification data into a model's inputs."""

import numpy as np


def _is_dataset(value):
    # tf.data.Dataset (and look-alikes) without importing TensorFlow.
    return hasattr(value, "map") and hasattr(value, "element_spec")


def map_training_data(x, y, fn, owner):
    """`fn(x, y) -> (inputs, targets)` on arrays, or mapped over a dataset.

    Returns `(x, y)` as `model.fit` takes them (`y` is `None` for a
    dataset).
    """
    if _is_dataset(x):
        if y is not None:
            raise ValueError(
                f"{owner}: with a dataset `x`, pass `y=None` (the dataset "
                "yields (images, labels)). Received: y of type "
                f"{type(y).__name__}"
            )
        return x.map(fn), None
    if x is None or y is None:
        raise ValueError(
            f"{owner}.fit needs classification data: images `x` and integer "
            "labels `y` (or a tf.data.Dataset of (images, labels) as `x`). "
            f"Received: x={type(x).__name__}, y={type(y).__name__}"
        )
    return fn(x, y)


def map_validation_data(validation_data, fn, owner):
    """The same mapping for `validation_data` (tuple or dataset)."""
    if validation_data is None:
        return None
    if _is_dataset(validation_data):
        return validation_data.map(fn)
    if isinstance(validation_data, (tuple, list)) and len(
        validation_data
    ) in (2, 3):
        inputs, targets = fn(validation_data[0], validation_data[1])
        return (inputs, targets, *validation_data[2:])
    raise ValueError(
        f"{owner}: `validation_data` must be (x_val, y_val), (x_val, y_val, "
        "sample_weight) or a tf.data.Dataset of (images, labels). Received: "
        f"{type(validation_data).__name__}"
    )


def check_unit_range(x, owner):
    """Raises unless array images lie in [0, 1] (a BCE reconstruction)."""
    if _is_dataset(x):
        return
    values = np.asarray(x)
    if values.size and (values.min() < 0.0 or values.max() > 1.0):
        raise ValueError(
            f"{owner}: the reconstruction loss is binary cross-entropy on "
            "pixels, so images must lie in [0, 1]. Received: values in "
            f"[{values.min():g}, {values.max():g}]"
        )
