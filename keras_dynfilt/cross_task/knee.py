"""The knee point of a characteristic curve (paper 001, eq. 2)."""

import numbers

import numpy as np

from keras_dynfilt.cross_task._validation import check_threshold


class KneePoint:
    """The chosen point of a characteristic curve.

    Attributes:
        index: Integer, the point's index along the curve (the lambda).
        n_filters: Integer, the number of filters with a non-zero
            coefficient there.
        rmse: Float, the validation RMSE there.
        keep: Boolean array over the layer's `C` channels, True for the
            filters to keep.
        threshold: The `t` it was chosen with.
        lambda_: The lasso penalty of the point.
    """

    def __init__(self, index, n_filters, rmse, keep, threshold, lambda_):
        self.index = int(index)
        self.n_filters = int(n_filters)
        self.rmse = float(rmse)
        self.keep = np.asarray(keep, bool)
        self.threshold = float(threshold)
        self.lambda_ = float(lambda_)

    def __repr__(self):
        return (f"<KneePoint t={self.threshold:g}: index {self.index}, "
                f"{self.n_filters} filters, RMSE {self.rmse:.4g}>")

    def as_dict(self):
        return {
            "index": self.index,
            "n_filters": self.n_filters,
            "rmse": self.rmse,
            "threshold": self.threshold,
            "lambda": self.lambda_,
            "keep": np.flatnonzero(self.keep).tolist(),
        }


def knee_point(n_filters, rmse, threshold=0.01, min_filters=1):
    """Index of the knee: the fewest filters within `t` of the best RMSE.

    Among the points with at least `min_filters` filters, the knee is the
    one with the fewest filters `n(k)` such that
    `RMSE(k) - min RMSE <= t * (max RMSE - min RMSE)`, minimum and maximum
    taken over the whole curve (paper 001, eq. 2; the paper finds
    `t = 0.01` best). Ties (several points with that many filters) go to
    the lowest RMSE, then to the first point (the largest lambda).

    Args:
        n_filters: 1-D array, the number of non-zero coefficients per point.
        rmse: 1-D array of the same length, the validation RMSE per point.
        threshold: Float `t` in [0, 1]. `0` picks the fewest filters that
            reach the minimum RMSE; `1` the fewest filters overall.
        min_filters: Non-negative integer, the fewest filters a knee may
            keep (1: never the empty model of the largest lambda). When no
            point with that many filters is within the tolerance, the knee
            is the best such point.

    Returns:
        Integer index into the curve.

    Examples:

    >>> keras_dynfilt.cross_task.knee_point([0, 1, 2, 5], [1.0, 0.3, 0.1,
    ...                                     0.099], threshold=0.01)
    2
    """
    threshold = check_threshold(threshold)
    if (isinstance(min_filters, bool)
            or not isinstance(min_filters, numbers.Integral)
            or min_filters < 0):
        raise ValueError(
            "`min_filters` must be a non-negative integer. "
            f"Received: min_filters={min_filters!r}"
        )
    n_filters = np.asarray(n_filters)
    rmse = np.asarray(rmse, dtype=np.float64)
    if n_filters.ndim != 1 or rmse.shape != n_filters.shape or not len(rmse):
        raise ValueError(
            "`n_filters` and `rmse` must be 1-D arrays of the same, non-zero "
            f"length. Received: shapes {n_filters.shape} and {rmse.shape}"
        )
    if not np.isfinite(rmse).all():
        raise ValueError("`rmse` contains NaN or infinite values.")
    low, high = rmse.min(), rmse.max()
    ok = (rmse - low <= threshold * (high - low)) & (n_filters >= min_filters)
    eligible = n_filters >= min_filters
    if not eligible.any():
        raise ValueError(
            f"No point of the curve has at least min_filters={min_filters} "
            f"filters (the most is {int(n_filters.max())})."
        )
    if not ok.any():
        # The best RMSE is only reached with fewer filters than allowed
        # (e.g. a task the layer does not carry): the best eligible point.
        ok = eligible & (rmse == rmse[eligible].min())
    candidates = np.flatnonzero(ok)
    fewest = n_filters[candidates].min()
    candidates = candidates[n_filters[candidates] == fewest]
    # np.argmin returns the first of equal minima: the largest lambda.
    return int(candidates[np.argmin(rmse[candidates])])
