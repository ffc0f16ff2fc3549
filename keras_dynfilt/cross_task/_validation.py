"""Argument checks shared by the cross-task functions."""

import numbers

import numpy as np

TASKS = ("continuous", "binary", "ordinal", "categorical")


def check_task(task):
    if task not in TASKS:
        raise ValueError(
            f"`task` must be one of {list(TASKS)}. Received: task={task!r}"
        )
    return task


def check_threshold(threshold, name="threshold"):
    if (
        isinstance(threshold, bool)
        or not isinstance(threshold, numbers.Real)
        or not 0 <= threshold <= 1
    ):
        raise ValueError(
            f"`{name}` must be a number in [0, 1]. "
            f"Received: {name}={threshold!r}"
        )
    return float(threshold)


def check_matrix(x, name):
    """A 2-D float64 feature matrix with at least one column."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(
            f"`{name}` must be a 2-D array (samples, channels). "
            f"Received: {name} of shape {x.shape}"
        )
    if x.shape[1] == 0:
        raise ValueError(
            f"`{name}` has no channels to probe. Received: {name} of shape "
            f"{x.shape}"
        )
    if x.shape[0] == 0:
        raise ValueError(f"`{name}` has no samples. Received: shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError(f"`{name}` contains NaN or infinite values.")
    return x


def check_same_length(x, y, x_name, y_name):
    if y is None:
        raise ValueError(
            f"`{y_name}` is missing: the labels of `{x_name}` are needed. "
            "Pass `(x, y)` batches to `pooled_activations` or a "
            "`(features, y)` tuple."
        )
    if len(x) != len(y):
        raise ValueError(
            f"`{x_name}` and `{y_name}` must have the same number of "
            f"samples. Received: {len(x)} features and {len(y)} labels"
        )
