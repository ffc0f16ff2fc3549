"""The characteristic curve of a layer: lasso path, filters vs RMSE."""

import time
import warnings

import numpy as np

from keras_dynfilt.cross_task._sklearn import sklearn_module
from keras_dynfilt.cross_task._validation import (
    check_matrix,
    check_same_length,
)
from keras_dynfilt.cross_task.knee import KneePoint, knee_point


class CharacteristicCurve:
    """Number of filters against validation RMSE along a lasso path.

    Each point is one lasso fit (paper 001, eq. 1) of the task on a layer's
    pooled features, standardised with the training split's mean and
    standard deviation (the target too); coefficients are on that scale.

    Attributes:
        lambdas: Array `(n_lambdas,)`, the penalties, largest first.
        coefs: Array `(n_lambdas, C)` of standardised coefficients
            (`(n_lambdas, C, K)` for a `K`-column target, e.g. one-hot).
        n_filters: Integer array `(n_lambdas,)`, channels with a non-zero
            coefficient (for every output column of a multi-output fit).
        rmse: Array `(n_lambdas,)`, validation RMSE in the target's units.
        rmse_train: Array `(n_lambdas,)`, training RMSE.
        seconds: Wall time of the fit, in seconds.
        x_mean, x_scale: The standardisation of the features `(C,)`.
        y_mean, y_scale: The standardisation of the target (scalars, or
            `(K,)` for a multi-output target).
        n_iter: Coordinate-descent iterations per point; points that hit
            `max_iter` are listed in `not_converged`.
        name: Optional name (the layer's).
    """

    def __init__(self, lambdas, coefs, n_filters, rmse, rmse_train,
                 seconds=0.0, x_mean=None, x_scale=None, y_mean=0.0,
                 y_scale=1.0, n_iter=None, not_converged=(), name=None):
        self.lambdas = np.asarray(lambdas, np.float64)
        self.coefs = np.asarray(coefs, np.float64)
        self.n_filters = np.asarray(n_filters, np.int64)
        self.rmse = np.asarray(rmse, np.float64)
        self.rmse_train = np.asarray(rmse_train, np.float64)
        self.seconds = float(seconds)
        channels = self.coefs.shape[1]
        self.x_mean = (np.zeros(channels) if x_mean is None
                       else np.asarray(x_mean, np.float64))
        self.x_scale = (np.ones(channels) if x_scale is None
                        else np.asarray(x_scale, np.float64))
        self.y_mean = np.asarray(y_mean, np.float64)
        self.y_scale = np.asarray(y_scale, np.float64)
        self.n_iter = None if n_iter is None else np.asarray(n_iter)
        self.not_converged = list(not_converged)
        self.name = name

    @property
    def num_channels(self):
        """`C`, the number of channels (filters) of the layer."""
        return self.coefs.shape[1]

    @property
    def multi_output(self):
        return self.coefs.ndim == 3

    def __repr__(self):
        return (f"<CharacteristicCurve {self.name or ''}: "
                f"{len(self.lambdas)} lambdas over {self.num_channels} "
                f"channels, best RMSE {self.rmse.min():.4g}>")

    def knee(self, threshold=0.01, min_filters=1):
        """The knee point (`knee_point`) and the filters it keeps.

        Args:
            threshold: Float `t` in [0, 1] (paper: 0.1, 0.01, 0.001).
            min_filters: The fewest filters the knee may keep.

        Returns:
            A `KneePoint`.
        """
        index = knee_point(self.n_filters, self.rmse, threshold, min_filters)
        return KneePoint(
            index, self.n_filters[index], self.rmse[index],
            self.support(index), threshold, self.lambdas[index],
        )

    def support(self, index):
        """Boolean mask over the channels with a non-zero coefficient."""
        coef = self.coefs[index]
        return (coef != 0).any(axis=-1) if coef.ndim == 2 else coef != 0

    def linear_map(self, index):
        """`(w, b)` with `prediction = x @ w + b` on raw pooled features.

        `w` is `(C,)` (or `(C, K)`), `b` a scalar (or `(K,)`).
        """
        coef = self.coefs[index]
        scale = self.y_scale
        w = (coef / self.x_scale[:, None] * scale if coef.ndim == 2
             else coef / self.x_scale * scale)
        b = self.y_mean - self.x_mean @ w
        return w, b

    def predict(self, x, index):
        """The lasso prediction of point `index` for raw pooled features."""
        w, b = self.linear_map(index)
        return np.asarray(x, np.float64) @ w + b

    def as_dict(self):
        return {
            "name": self.name,
            "lambdas": self.lambdas.tolist(),
            "n_filters": self.n_filters.tolist(),
            "rmse": self.rmse.tolist(),
            "rmse_train": self.rmse_train.tolist(),
            "seconds": self.seconds,
            "num_channels": self.num_channels,
            "not_converged": self.not_converged,
        }


def _rmse(prediction, y):
    return float(np.sqrt(np.mean((prediction - y) ** 2)))


def characteristic_curve(x_train, y_train, x_val, y_val, n_lambdas=100,
                         lambda_ratio=1e-4, max_iter=10000, tol=1e-4,
                         name=None):
    """Fits a lasso path on pooled features; returns filters vs RMSE.

    Solves `min (1/2N) ||y - X b||^2 + lambda ||b||_1` (paper 001, eq. 1)
    with scikit-learn's `lasso_path` for `n_lambdas` penalties: the largest
    is `max_j |x_j^T (y - mean y)| / N`, the smallest that makes every
    coefficient zero, the rest a geometric sequence down to
    `lambda_max * lambda_ratio` (MATLAB `lasso`'s defaults). Features and
    target are standardised with the training split's statistics
    (channels with zero variance stay at zero). A 2-D target (one-hot
    classes) uses the multi-output path (one support for every column).
    Points that reach `max_iter` are recorded in `not_converged`; the
    solver's `ConvergenceWarning` is not raised.

    Args:
        x_train: Array `(N, C)`, pooled features of the training split.
        y_train: Array `(N,)` or `(N, K)`, the target.
        x_val: Array `(M, C)`, validation features.
        y_val: Array `(M,)` or `(M, K)`, validation target.
        n_lambdas: Integer >= 2, points on the curve.
        lambda_ratio: Float in (0, 1), smallest over largest lambda.
        max_iter: Coordinate-descent iterations per point.
        tol: Coordinate-descent tolerance (scikit-learn's `tol`).
        name: Optional name (e.g. the layer's) kept on the curve.

    Returns:
        A `CharacteristicCurve`.

    Examples:

    A target made of two of 16 channels: the knee keeps those two.

    >>> rng = np.random.default_rng(0)
    >>> features = rng.normal(size=(300, 16))
    >>> target = features[:, 3] - 2 * features[:, 7] + 0.1 * rng.normal(
    ...     size=300)
    >>> curve = keras_dynfilt.cross_task.characteristic_curve(
    ...     features[:200], target[:200], features[200:], target[200:])
    >>> curve
    <CharacteristicCurve : 100 lambdas over 16 channels, best RMSE 0.1029>
    >>> knee = curve.knee(0.01)
    >>> knee.n_filters, np.flatnonzero(curve.support(knee.index)).tolist()
    (2, [3, 7])
    """
    linear_model = sklearn_module("linear_model")
    exceptions = sklearn_module("exceptions")
    x_train = check_matrix(x_train, "x_train")
    x_val = check_matrix(x_val, "x_val")
    check_same_length(x_train, y_train, "x_train", "y_train")
    check_same_length(x_val, y_val, "x_val", "y_val")
    if x_val.shape[1] != x_train.shape[1]:
        raise ValueError(
            "`x_train` and `x_val` must have the same channels. Received: "
            f"{x_train.shape[1]} and {x_val.shape[1]}"
        )
    y_train = np.asarray(y_train, np.float64)
    y_val = np.asarray(y_val, np.float64)
    if y_train.ndim not in (1, 2) or y_val.shape[1:] != y_train.shape[1:]:
        raise ValueError(
            "`y_train` and `y_val` must be 1-D, or 2-D with the same "
            f"columns. Received: shapes {y_train.shape} and {y_val.shape}"
        )
    if isinstance(n_lambdas, bool) or not isinstance(n_lambdas, int) or (
            n_lambdas < 2):
        raise ValueError("`n_lambdas` must be an integer >= 2. "
                         f"Received: n_lambdas={n_lambdas!r}")
    if not 0 < lambda_ratio < 1:
        raise ValueError("`lambda_ratio` must be in (0, 1). "
                         f"Received: lambda_ratio={lambda_ratio!r}")
    start = time.perf_counter()
    x_mean = x_train.mean(axis=0)
    x_scale = x_train.std(axis=0)
    x_scale[x_scale <= 1e-12 * max(1.0, np.abs(x_mean).max())] = 1.0
    y_mean, y_scale = y_train.mean(axis=0), y_train.std(axis=0)
    if np.any(y_scale == 0):
        raise ValueError("`y_train` is constant: there is nothing to fit.")
    xs = (x_train - x_mean) / x_scale
    ys = (y_train - y_mean) / y_scale
    n = len(xs)
    correlation = xs.T @ ys / n
    if correlation.ndim == 2:  # multi-output: the group norm per channel
        correlation = np.linalg.norm(correlation, axis=1)
    lambda_max = np.abs(correlation).max()
    if lambda_max == 0:
        raise ValueError("No channel is correlated with the target.")
    # A hair above max |x_j^T y| / N, so that rounding keeps point 0 empty.
    lambdas = lambda_max * (1 + 1e-9) * np.geomspace(1, lambda_ratio,
                                                     n_lambdas)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", exceptions.ConvergenceWarning)
        _, coefs, _, n_iter = linear_model.lasso_path(
            xs, ys, alphas=lambdas, max_iter=max_iter, tol=tol,
            return_n_iter=True,
        )
    n_iter = np.asarray(n_iter)
    # (C, L) or (K, C, L) -> (L, C) or (L, C, K)
    coefs = (np.moveaxis(coefs, -1, 0) if coefs.ndim == 2
             else np.transpose(coefs, (2, 1, 0)))
    curve = CharacteristicCurve(
        lambdas, coefs, np.zeros(n_lambdas), np.zeros(n_lambdas),
        np.zeros(n_lambdas), x_mean=x_mean, x_scale=x_scale, y_mean=y_mean,
        y_scale=y_scale, n_iter=n_iter,
        not_converged=np.flatnonzero(n_iter >= max_iter).tolist(),
        name=name,
    )
    curve.n_filters = np.array(
        [curve.support(i).sum() for i in range(n_lambdas)], np.int64)
    curve.rmse = np.array(
        [_rmse(curve.predict(x_val, i), y_val) for i in range(n_lambdas)])
    curve.rmse_train = np.array(
        [_rmse(curve.predict(x_train, i), y_train) for i in range(n_lambdas)])
    curve.seconds = time.perf_counter() - start
    return curve
