"""Importance criteria: how the units of a filter group are ranked.

Every tool of the library that ranks units (`keras_dynfilt.pruning.prune`
and `Pruner`, the `SoftFilterPruning` callback, the tuning hypermodels
through it, the benchmarks) scores them here and counts how many to remove
with `pruned_count` / `round_kept`, so they rank and count alike.

A unit of a `FilterGroup` is every producer filter that is removed with it
(the convolutions meeting in a residual add, both halves of an MFM pair,
...), so each criterion scores a unit over all its coupled filters
(group-level importance, as Torch-Pruning reduces an importance over a
group). The reduction, per criterion:

- `"l1"`: `sum |w|` over the kernel entries of all the unit's filters
  (the L1 norm of its row of `group.filter_weights()`).
- `"l2"`: `sqrt(sum w^2)` over the same entries (the L2 norm of the
  concatenated filters).
- `"fpgm"`: the sum of Euclidean distances from the unit's row to every
  other row (FPGM: the units nearest the geometric median are the most
  replaceable).
- `"random"`: uniform in [0, 1), seeded.
- `"bn_scale"`: `sum |gamma|` over the BatchNormalization entries of the
  unit's channels (network slimming); every unit needs a BN with `scale`.
- `"taylor"`: `sum |w * dL/dw|` over every parameter that masking zeroes
  for the unit (kernel slices, biases, BN gamma and beta, depthwise
  filters), the gradients of the compiled loss averaged over a few batches
  of `data` (first-order Taylor estimate of the loss change).
- `"lamp"`: `s_u / sum_{v: s_v >= s_u} s_v` with `s` the squared L2 norm
  (LAMP; comparable across groups as it is).

The lowest scores are removed.
A callable criterion receives the `(size, D)` NumPy array
`group.filter_weights()` (float64) and returns `size` scores.

For global ranking (`scope="global"`), the scores of each group are divided
by their mean (`normalize`), except `"lamp"`, which is normalised already.

Reference:
    - [He et al., Soft Filter Pruning (IJCAI 2018)](
      https://arxiv.org/abs/1808.06866) (`"l2"`)
    - [Li et al., Pruning Filters for Efficient ConvNets (ICLR 2017)](
      https://arxiv.org/abs/1608.08710) (`"l1"`)
    - [He et al., Filter Pruning via Geometric Median (CVPR 2019)](
      https://arxiv.org/abs/1811.00250) (`"fpgm"`)
    - [Liu et al., Learning Efficient Convolutional Networks through
      Network Slimming (ICCV 2017)](https://arxiv.org/abs/1708.06519)
      (`"bn_scale"`)
    - [Molchanov et al., Importance Estimation for Neural Network Pruning
      (CVPR 2019)](https://arxiv.org/abs/1906.10771) (`"taylor"`)
    - [Lee et al., Layer-adaptive Sparsity for the Magnitude-based Pruning
      (ICLR 2021)](https://arxiv.org/abs/2010.07611) (`"lamp"`)
    - [Fang et al., DepGraph: Towards Any Structural Pruning (CVPR 2023)](
      https://arxiv.org/abs/2301.12900) (group-level importance)
"""

import math
import numbers

import keras
import numpy as np

from keras_dynfilt.pruning._gradients import gradient_function
from keras_dynfilt.pruning.graph import _variables
from keras_dynfilt.pruning.masking import _zero_targets

#: Names accepted wherever a criterion is asked for.
NAMES = ("l1", "l2", "fpgm", "random", "bn_scale", "taylor", "lamp")
#: Criteria that rank from data (`score_groups(..., data=...)`).
NEEDS_DATA = ("taylor",)


def l1(weights):
    """L1 norm of each row of a `(size, D)` filter matrix."""
    return np.sum(np.abs(weights), axis=1)


def l2(weights):
    """L2 norm of each row of a `(size, D)` filter matrix."""
    return np.sqrt(np.sum(np.square(weights), axis=1))


def fpgm(weights):
    """Sum of Euclidean distances from each row to all the others."""
    weights = np.asarray(weights, "float64")
    squared = np.sum(np.square(weights), axis=1)
    d2 = squared[:, None] + squared[None, :] - 2.0 * weights @ weights.T
    return np.sum(np.sqrt(np.maximum(d2, 0.0)), axis=1)


def lamp(weights):
    """LAMP scores of the rows: squared norm over the larger rows' sum."""
    squared = np.sum(np.square(np.asarray(weights, "float64")), axis=1)
    order = np.argsort(squared, kind="stable")
    # Suffix sums in ascending order: row order[i] over rows order[i:].
    tail = np.cumsum(squared[order][::-1])[::-1]
    scores = np.empty_like(squared)
    scores[order] = squared[order] / np.maximum(tail, 1e-300)
    return scores


_WEIGHT_CRITERIA = {"l1": l1, "l2": l2, "fpgm": fpgm, "lamp": lamp}


def _unit_of_root(group):
    unit_of_root = np.full(len(group.graph.roots), -1, np.int64)
    unit_of_root[group._roots] = np.arange(group.size)
    return unit_of_root


def bn_scale(group):
    """`sum |gamma|` of the BatchNormalization entries of each unit.

    Raises a `ValueError` when a unit has no BatchNormalization gamma (a
    group without BN, or BN with `scale=False`).
    """
    graph = group.graph
    unit_of_root = _unit_of_root(group)
    scores = np.zeros(group.size)
    found = np.zeros(group.size, bool)
    for record in graph.records.values():
        if record.rule is None:
            continue
        axes = record.rule.weights(
            record.layer, record.in_slots, record.out_slots
        ).get("gamma", ())
        for axis in axes:
            units = unit_of_root[graph.roots[np.asarray(axis.slots)]]
            if not np.any(units >= 0):
                continue
            gamma = np.abs(
                keras.ops.convert_to_numpy(
                    _variables(record.layer)["gamma"].value
                ).astype("float64")
            )
            gamma = np.moveaxis(gamma, axis.axis, 0).reshape(len(units), -1)
            mine = units >= 0
            np.add.at(scores, units[mine], gamma[mine].sum(axis=1))
            found[units[mine]] = True
    if not found.all():
        raise ValueError(
            f"criterion='bn_scale' ranks units by the BatchNormalization "
            f"gamma of their channels, but {int((~found).sum())} of the "
            f"{group.size} units of group {group.name!r} (layers "
            f"{list(group.layers)}) have none. Exclude the group "
            "(`exclude=[...]`) or use another criterion."
        )
    return scores


def taylor(group, gradients):
    """`sum |w * g|` over every parameter masking zeroes for each unit.

    Args:
        group: A `FilterGroup`.
        gradients: Dict mapping `id(variable)` to the NumPy gradient of the
            loss with respect to it (missing: zero).
    """
    scores = np.zeros(group.size)
    for variable, axis, units in _zero_targets(group):
        grad = gradients.get(id(variable))
        if grad is None:
            continue
        value = keras.ops.convert_to_numpy(variable.value).astype("float64")
        product = np.abs(value * grad)
        product = np.moveaxis(product, axis, 0).reshape(len(units), -1)
        mine = units >= 0
        np.add.at(scores, units[mine], product[mine].sum(axis=1))
    return scores


def _batches(data, batch_size, batches):
    """Up to `batches` `(x, y)` batches from arrays or an iterable."""
    if (
        isinstance(data, (tuple, list))
        and len(data) in (2, 3)
        and hasattr(data[0], "shape")
    ):
        x, y = data[0], data[1]
        n = len(x)
        for start in range(0, min(n, batch_size * batches), batch_size):
            yield x[start : start + batch_size], y[start : start + batch_size]
        return
    try:
        iterator = iter(data)
    except TypeError:
        raise TypeError(
            "`data` must be a tuple `(x, y)` of arrays or an iterable of "
            "`(x, y)` batches (a tf.data.Dataset, a generator, a list). "
            f"Received: data of type {type(data).__name__}"
        ) from None
    for i, batch in enumerate(iterator):
        if i >= batches:
            break
        if not isinstance(batch, (tuple, list)) or len(batch) < 2:
            raise TypeError(
                "`data` must yield `(x, y)` batches. Received: a batch of "
                f"type {type(batch).__name__}"
            )
        yield batch[0], batch[1]


def mean_gradients(model, data, batch_size=32, batches=4):
    """Mean loss gradients over the first `batches` batches of `data`.

    Returns a dict mapping `id(variable)` to a NumPy array.
    """
    if getattr(model, "compiled", False) is not True or not getattr(
        model, "loss", None
    ):
        raise ValueError(
            "criterion='taylor' needs the gradient of the model's loss: "
            "compile the model with a loss first (`model.compile(loss=...)`)."
        )
    total = None
    count = 0
    gradients = gradient_function(model)
    for x, y in _batches(data, batch_size, batches):
        grads = gradients(x, y)
        if total is not None:
            grads = [a + b for a, b in zip(total, grads)]
        total = grads
        count += 1
    if not count:
        raise ValueError("`data` gave no batch to compute gradients from.")
    return {
        id(v): g / count for v, g in zip(model.trainable_variables, total)
    }


def check_criterion(criterion, name="criterion"):
    """Returns the lower-cased name, or the callable; raises otherwise."""
    if callable(criterion):
        return criterion
    if isinstance(criterion, str) and criterion.lower() in NAMES:
        return criterion.lower()
    raise ValueError(
        f"`{name}` must be one of {NAMES} or a callable mapping a (size, D) "
        f"array of filters to size scores. Received: {name}={criterion!r}"
    )


def _check_scores(scores, group):
    scores = np.asarray(scores, "float64").reshape(-1)
    if scores.shape != (group.size,):
        raise ValueError(
            f"`criterion` must return one score per filter ({group.size} "
            f"for group {group.name!r}). Received: {scores.shape[0]} scores"
        )
    if not np.all(np.isfinite(scores)):
        raise ValueError(
            "`criterion` returned non-finite scores (NaN or inf) for group "
            f"{group.name!r}, so the ranking would be arbitrary. "
            f"Received: scores={scores}"
        )
    return scores


def score_groups(
    groups, criterion="l2", data=None, batch_size=32, batches=4, seed=0
):
    """Scores the units of every group (lower: less important).

    Args:
        groups: A list of `FilterGroup`s (of one model).
        criterion: A name of `NAMES` or a callable (see the module doc).
        data: For `"taylor"`: a tuple `(x, y)` of arrays or an iterable of
            `(x, y)` batches; the model must be compiled with a loss.
        batch_size: Integer, the batch size when `data` is arrays.
        batches: Integer, how many batches the gradients average over.
        seed: Integer, the seed of `"random"`.

    Returns:
        A list of float64 NumPy arrays, one per group, of length
        `group.size`.

    Examples:
        >>> model = keras.Sequential([
        ...     keras.Input((8, 8, 3)),
        ...     keras.layers.Conv2D(4, 3),
        ...     keras.layers.Conv2D(6, 3),
        ...     keras.layers.GlobalAveragePooling2D(),
        ...     keras.layers.Dense(2)])
        >>> groups = keras_dynfilt.pruning.filter_groups(model)
        >>> scores = keras_dynfilt.pruning.criteria.score_groups(groups, "l1")
        >>> [s.shape for s in scores]  # one score per unit of each group
        [(4,), (6,)]
    """
    criterion = check_criterion(criterion)
    if criterion in NEEDS_DATA and data is None:
        raise ValueError(
            f"criterion={criterion!r} ranks units from data: pass `data` "
            "(a tuple `(x, y)` or an iterable of `(x, y)` batches)."
        )
    groups = list(groups)
    if criterion == "taylor":
        if not groups:
            return []
        model = groups[0].graph.model
        gradients = mean_gradients(model, data, batch_size, batches)
        return [taylor(g, gradients) for g in groups]
    if criterion == "random":
        rng = np.random.default_rng(seed)
        return [rng.random(g.size) for g in groups]
    if criterion == "bn_scale":
        return [bn_scale(g) for g in groups]
    fn = _WEIGHT_CRITERIA.get(criterion, criterion)
    return [
        _check_scores(fn(g.filter_weights().astype("float64")), g)
        for g in groups
    ]


def normalize(scores, criterion):
    """Scores made comparable across groups (global ranking).

    Each group's scores are divided by their mean; `"lamp"` scores are
    returned as they are (LAMP is normalised per group by construction).
    """
    if criterion == "lamp":
        return [np.asarray(s, "float64") for s in scores]
    return [
        np.asarray(s, "float64") / max(float(np.mean(s)), 1e-300)
        for s in scores
    ]


def pruned_count(size, rate):
    """`floor(size * rate)`, robust to float error, keeping one unit.

    The tolerance is float32's: tfmot's schedules compute the sparsity in
    float32 (its `PolynomialDecay` gives 0.099999994 for 0.1), and
    `floor(10 * 0.099999994)` must still prune one filter of ten: a product
    within a relative 1e-6 below an integer counts as that integer.
    """
    return min(size - 1, int(math.floor(size * rate * (1 + 1e-6) + 1e-9)))


def round_kept(size, removed, round_to):
    """Units removed once the kept count is rounded up to `round_to`.

    The kept count `size - removed` becomes the next multiple of
    `round_to` (Torch-Pruning's rounding: never more removed than asked);
    a group that would keep all its units is left whole.
    """
    if not round_to or round_to == 1 or removed <= 0:
        return max(int(removed), 0)
    kept = size - removed
    kept = int(math.ceil(kept / round_to)) * round_to
    return max(size - kept, 0)


def lowest(scores, n):
    """Keep mask removing the `n` lowest scores (stable ties: first)."""
    keep = np.ones(len(scores), bool)
    if n > 0:
        keep[np.argsort(np.asarray(scores), kind="stable")[:n]] = False
    return keep


def check_rate(value, name="ratio", upper=1.0):
    """Raises unless `value` is a float in [0, upper); returns float."""
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Real)
        or not 0.0 <= value < upper
    ):
        raise ValueError(
            f"`{name}` must be a float in [0, {upper:g}) (the fraction of "
            f"units removed). Received: {name}={value!r}"
        )
    return float(value)
