"""Linear probes of every layer for a satellite task."""

import time
import warnings

import numpy as np

from keras_dynfilt.cross_task._sklearn import sklearn_module
from keras_dynfilt.cross_task._validation import (
    check_matrix,
    check_same_length,
    check_task,
)
from keras_dynfilt.cross_task.activations import PooledActivations


class TransferResult:
    """Per-layer scores of linear probes for one task.

    Attributes:
        task: The task kind.
        scores: Dict `{layer: {"val": {...}, "test": {...}}}`. Continuous:
            `rmse`, `mae`, `r2`; binary: `accuracy` (at the layer's
            threshold), `rmse`; ordinal: `accuracy` (of the bins), `rmse`,
            `mae`; categorical: `accuracy`. `"test"` only with `test=`.
        best_layer: The layer with the best validation score (lowest RMSE
            for continuous tasks, highest accuracy otherwise; the earlier
            layer on ties).
        thresholds: Dict `{layer: threshold}` of binary tasks (the
            validation optimum), else empty.
        models: Dict `{layer: fitted scikit-learn estimator}`.
        bins: The bin edges of an ordinal task, else None.
        seconds: Wall time of all fits and evaluations, in seconds.
    """

    def __init__(self, task, scores, best_layer, thresholds, models, bins,
                 seconds):
        self.task = task
        self.scores = scores
        self.best_layer = best_layer
        self.thresholds = thresholds
        self.models = models
        self.bins = bins
        self.seconds = float(seconds)

    def __repr__(self):
        return (f"<TransferResult {self.task}: best layer "
                f"{self.best_layer!r} of {len(self.scores)}>")

    def predict(self, features, layer=None):
        """Task predictions (labels, bins or values) from pooled features."""
        layer = layer or self.best_layer
        model = self.models[layer]
        features = check_matrix(features, "features")
        if self.task == "categorical":
            return model.predict(features)
        value = model.predict(features)
        if self.task == "binary":
            return (value > self.thresholds[layer]).astype(int)
        if self.task == "ordinal":
            return np.digitize(value, self.bins)
        return value

    def table(self, split="val"):
        """The per-layer scores of one split as a text table."""
        metrics = list(next(iter(self.scores.values()))[split])
        rows = [["layer"] + metrics]
        for layer, s in self.scores.items():
            mark = " *" if layer == self.best_layer else ""
            rows.append([layer + mark] + [f"{s[split][m]:.4f}"
                                          for m in metrics])
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths))
                         for r in rows)

    def as_dict(self):
        return {
            "task": self.task,
            "best_layer": self.best_layer,
            "scores": self.scores,
            "thresholds": self.thresholds,
            "seconds": self.seconds,
        }


def _split(data, name):
    """`(features_dict, labels)` from PooledActivations or a tuple."""
    if data is None:
        return None, None
    if isinstance(data, PooledActivations):
        features, y = data.features, data.labels
    elif isinstance(data, (tuple, list)) and len(data) == 2:
        features, y = data
        if isinstance(features, PooledActivations):
            features = features.features
    else:
        raise TypeError(
            f"`{name}` must be a `PooledActivations` with labels or a "
            f"`(features, y)` tuple. Received: {type(data).__name__}"
        )
    if not isinstance(features, dict):
        raise TypeError(
            f"`{name}`'s features must be a dict `{{layer: (N, C) array}}`. "
            f"Received: {type(features).__name__}"
        )
    if y is None:
        raise ValueError(
            f"`{name}` has no labels; pass `(x, y)` to `pooled_activations` "
            "or a `(features, y)` tuple."
        )
    return features, np.asarray(y)


def best_threshold(score, y):
    """The threshold on `score` that maximises the accuracy of
    `score > threshold` against binary `y` (ties: closest to 0.5)."""
    score = np.asarray(score, np.float64)
    y = np.asarray(y) > 0.5
    values = np.unique(score)
    candidates = np.concatenate([
        [values[0] - 1.0], (values[:-1] + values[1:]) / 2, [values[-1] + 1.0]
    ])
    order = np.argsort(score, kind="stable")
    sorted_score, sorted_y = score[order], y[order]
    # Samples at or below each candidate are predicted 0.
    below = np.searchsorted(sorted_score, candidates, side="right")
    negatives_below = np.concatenate([[0], np.cumsum(~sorted_y)])[below]
    positives_above = y.sum() - np.concatenate(
        [[0], np.cumsum(sorted_y)])[below]
    accuracy = (negatives_below + positives_above) / len(y)
    best = np.flatnonzero(accuracy == accuracy.max())
    return float(candidates[best[np.argmin(np.abs(candidates[best] - 0.5))]])


def _regression_scores(prediction, y):
    error = prediction - y
    total = np.sum((y - y.mean()) ** 2)
    return {
        "rmse": float(np.sqrt(np.mean(error ** 2))),
        "mae": float(np.mean(np.abs(error))),
        "r2": float(1 - np.sum(error ** 2) / total) if total else 0.0,
    }


def linear_transfer(train, val, task, test=None, layers=None, bins=None,
                    max_iter=1000):
    """Fits a linear probe per layer on pooled activations and scores it.

    A plain least-squares regression `y = w^T GAP(A_l(I)) + b` per layer
    (paper 001): binary tasks regress to {0, 1} and threshold at the
    validation optimum; ordinal tasks regress on the continuous value and
    bin it with `bins`; categorical tasks use a multinomial logistic
    regression (L2, `C=1`) on standardised features.

    Args:
        train: `PooledActivations` with labels, or `(features, y)` with
            `features` a dict `{layer: (N, C) array}`.
        val: The validation split, like `train`.
        task: `"continuous"`, `"binary"`, `"ordinal"` or `"categorical"`.
        test: Optional test split, like `train`, scored once.
        layers: Optional list of layer names (default: every layer of
            `train`).
        bins: Increasing 1-D bin edges (`numpy.digitize`) of an ordinal task.
        max_iter: Iterations of the logistic regression.

    Returns:
        A `TransferResult`.

    Examples:

    Two layers' pooled features (`pooled_activations` gives them from a
    model); `conv2` holds the binary task's signal with less noise:

    >>> rng = np.random.default_rng(0)
    >>> def split(n):
    ...     signal = rng.normal(size=n)
    ...     noise = rng.normal(size=(4, n))
    ...     features = {
    ...         "conv1": np.stack([signal + noise[0], noise[1]], 1),
    ...         "conv2": np.stack([signal + 0.3 * noise[2], noise[3]], 1)}
    ...     return features, (signal > 0).astype("int32")
    >>> train, val, test = split(200), split(100), split(100)
    >>> result = keras_dynfilt.cross_task.linear_transfer(
    ...     train, val, "binary", test=test)
    >>> result
    <TransferResult binary: best layer 'conv2' of 2>
    >>> print(result.table("test"))
    layer    accuracy  rmse
    conv1    0.7300    0.4343
    conv2 *  0.7800    0.3450
    """
    check_task(task)
    linear_model = sklearn_module("linear_model")
    if task == "ordinal":
        if bins is None:
            raise ValueError("`task='ordinal'` needs `bins=` (bin edges).")
        bins = np.asarray(bins, np.float64)
        if bins.ndim != 1 or not len(bins) or np.any(np.diff(bins) <= 0):
            raise ValueError(
                "`bins` must be a non-empty, increasing 1-D array of edges. "
                f"Received: bins={bins!r}"
            )
    elif bins is not None:
        raise ValueError(
            f"`bins` is only for `task='ordinal'`. Received: task={task!r}"
        )
    splits = {"train": _split(train, "train"), "val": _split(val, "val")}
    if test is not None:
        splits["test"] = _split(test, "test")
    names = list(splits["train"][0]) if layers is None else list(layers)
    if not names:
        raise ValueError("`train` has no layers to probe.")
    for split, (features, y) in list(splits.items()):
        checked = {}
        for name in names:
            if name not in features:
                raise ValueError(
                    f"`layers` names {name!r}, which `{split}` has no "
                    f"features for. Layers: {sorted(features)}"
                )
            checked[name] = check_matrix(features[name],
                                         f"{split}[{name!r}]")
            check_same_length(checked[name], y, f"{split}[{name!r}]",
                              f"{split} labels")
        splits[split] = (checked, y)
    if task == "binary":
        for split, (_, y) in splits.items():
            if not np.isin(np.unique(y), (0, 1)).all():
                raise ValueError(
                    f"`task='binary'` needs labels in {{0, 1}}; `{split}` "
                    f"has {np.unique(y)[:10]}"
                )
    start = time.perf_counter()
    scores, thresholds, models = {}, {}, {}
    for name in names:
        x_train, y_train = splits["train"][0][name], splits["train"][1]
        if task == "categorical":
            preprocessing = sklearn_module("preprocessing")
            pipeline = sklearn_module("pipeline")
            exceptions = sklearn_module("exceptions")
            model = pipeline.make_pipeline(
                preprocessing.StandardScaler(),
                linear_model.LogisticRegression(max_iter=max_iter),
            )
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", exceptions.ConvergenceWarning)
                model.fit(x_train, y_train.astype(int))
        else:
            model = linear_model.LinearRegression().fit(
                x_train, y_train.astype(np.float64))
        models[name] = model
        if task == "binary":
            thresholds[name] = best_threshold(
                model.predict(splits["val"][0][name]), splits["val"][1])
        scores[name] = {}
        for split in [s for s in splits if s != "train"]:
            x, y = splits[split][0][name], splits[split][1]
            if task == "categorical":
                scores[name][split] = {
                    "accuracy": float(np.mean(model.predict(x) == y))
                }
                continue
            value = model.predict(x)
            s = _regression_scores(value, y.astype(np.float64))
            if task == "binary":
                s = {"accuracy": float(np.mean(
                    (value > thresholds[name]) == (y > 0.5))),
                    "rmse": s["rmse"]}
            elif task == "ordinal":
                s = {"accuracy": float(np.mean(
                    np.digitize(value, bins) == np.digitize(y, bins))),
                    "rmse": s["rmse"], "mae": s["mae"]}
            scores[name][split] = s
    seconds = time.perf_counter() - start
    if task == "continuous":
        best = min(names, key=lambda n: scores[n]["val"]["rmse"])
    else:
        best = max(names, key=lambda n: scores[n]["val"]["accuracy"])
    return TransferResult(task, scores, best, thresholds, models, bins,
                          seconds)
