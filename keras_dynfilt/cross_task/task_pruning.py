"""Task-specific pruning: truncate, keep the knee filters, compact."""

import collections

import keras
import numpy as np

from keras_dynfilt._keras_private import graph_operations
from keras_dynfilt.cross_task._graph import pooled, probe_points, unique_name
from keras_dynfilt.cross_task._sklearn import sklearn_module
from keras_dynfilt.cross_task._validation import check_task, check_threshold
from keras_dynfilt.cross_task.activations import collect
from keras_dynfilt.cross_task.curves import CharacteristicCurve
from keras_dynfilt.pruning import analyze, compact, model_cost
from keras_dynfilt.pruning.cost import macs_reduction
from keras_dynfilt.pruning.graph import graph_of


class TaskPruning:
    """A network pruned for one satellite task, and what was removed.

    Attributes:
        model: The compacted `keras.Model`, from the original input to the
            task output (a linear head on the pooled features of
            `best_layer`): ordinary Keras layers, `.keras` and
            `safe_mode=True` safe; not compiled.
        best_layer: The layer the network was truncated after.
        threshold: The knee threshold `t`.
        knees: Dict `{layer: KneePoint}` of the layers that remain.
        kept: Dict `{layer: sorted list of the channels kept}` (channels at
            the probe point: MFM channels for a layer followed by MFM).
        held: Dict `{layer: {channel: reason}}`: channels the knee dropped
            but the network keeps, because another probe of the same
            coupled unit (a residual stream) keeps it, or because the
            pruning engine holds the channel fixed.
        widths: Dict `{layer: (filters before, filters after)}` of the
            producers of the truncated network.
        removed_layers: Layers of the original model above `best_layer`
            (cut with the truncation), in graph order (`table()` lists
            those with weights).
        cost_before: `ModelCost` of the whole original model.
        cost_after: `ModelCost` of `model`.
        head: Name of the head's Dense layer; `pool`: of its pooling layer
            (None when the best layer's output has no spatial axes).
    """

    def __init__(self, model, best_layer, threshold, knees, kept, held,
                 widths, removed_layers, cost_before, cost_after, head,
                 pool, channels, removed_with_weights=()):
        self.model = model
        self.best_layer = best_layer
        self.threshold = threshold
        self.knees = knees
        self.kept = kept
        self.held = held
        self.widths = widths
        self.removed_layers = removed_layers
        self.cost_before = cost_before
        self.cost_after = cost_after
        self.head = head
        self.pool = pool
        self._channels = channels
        self._removed_with_weights = list(removed_with_weights)

    @property
    def size_reduction(self):
        """Fraction of the original model's parameters removed."""
        return 1 - self.cost_after.params / self.cost_before.params

    @property
    def macs_reduction(self):
        """Fraction of the original model's multiply-adds removed."""
        return macs_reduction(self.cost_before, self.cost_after)

    def table(self):
        """Per-layer widths before and after (paper 001, Tables 3-6)."""
        rows = [("layer", "channels", "kept", "filters before", "after")]
        for name, (before, after) in self.widths.items():
            channels = self._channels.get(name)
            rows.append((
                name, "" if channels is None else str(channels),
                str(len(self.kept[name])) if name in self.kept else "",
                str(before), str(after)))
        for name in self._removed_with_weights:
            rows.append((name, "", "", "", "removed"))
        widths = [max(len(r[i]) for r in rows) for i in range(5)]
        lines = ["  ".join(c.rjust(w) if i else c.ljust(w)
                           for i, (c, w) in enumerate(zip(r, widths)))
                 for r in rows]
        lines.append(
            f"params {self.cost_before.params:,} -> "
            f"{self.cost_after.params:,} ({100 * self.size_reduction:.2f}% "
            f"smaller); MACs {self.cost_before.macs:,} -> "
            f"{self.cost_after.macs:,} ({100 * self.macs_reduction:.2f}% "
            "fewer)")
        return "\n".join(lines)

    def as_dict(self):
        return {
            "best_layer": self.best_layer,
            "threshold": self.threshold,
            "knees": {k: v.as_dict() for k, v in self.knees.items()},
            "kept": self.kept,
            "held": {k: {str(c): r for c, r in v.items()}
                     for k, v in self.held.items()},
            "widths": {k: list(v) for k, v in self.widths.items()},
            "removed_layers": self.removed_layers,
            "params_before": self.cost_before.params,
            "params_after": self.cost_after.params,
            "macs_before": self.cost_before.macs,
            "macs_after": self.cost_after.macs,
            "size_reduction": self.size_reduction,
            "macs_reduction": self.macs_reduction,
        }


def _width(layer):
    for attr in ("filters", "units"):
        if hasattr(layer, attr):
            return int(getattr(layer, attr))
    return None


def _set_head(head, w, b):
    w = np.asarray(w, np.float32).reshape(head.kernel.shape)
    b = np.asarray(b, np.float32).reshape(head.bias.shape)
    head.set_weights([w, b])


def refit_head(model, head, data, task, batch_size=None):
    """Refits the linear head of a task network on its own pooled features.

    Least squares for continuous, binary and ordinal tasks; a multinomial
    logistic regression (L2, `C=1`, on standardised features, folded into
    the head: logits) for categorical ones.
    """
    linear_model = sklearn_module("linear_model")
    layer = model.get_layer(head)
    inputs = model.inputs[0] if len(model.inputs) == 1 else model.inputs
    features_model = keras.Model(inputs, {"features": layer.input})
    features, y = collect(features_model, data, batch_size)
    features = features["features"].astype(np.float64)
    if y is None:
        raise ValueError("`refit` needs labels: pass `(x, y)`.")
    if len(y) != len(features):
        raise ValueError(
            "`refit`'s images and labels must have the same length. "
            f"Received: {len(features)} and {len(y)}")
    if task == "categorical":
        # On standardised features (as `linear_transfer`), folded back into
        # the head: the L2 penalty then does not depend on feature scales.
        mean = features.mean(axis=0)
        scale = features.std(axis=0)
        scale[scale == 0] = 1.0
        fit = linear_model.LogisticRegression(max_iter=2000).fit(
            (features - mean) / scale, np.asarray(y).astype(int))
        w = fit.coef_.T / scale[:, None]
        b = fit.intercept_ - mean @ w
        if w.shape[1] == 1:  # two classes: one logit -> two
            w, b = np.concatenate([-w, w], 1) / 2, np.array([-b[0], b[0]]) / 2
    else:
        fit = linear_model.LinearRegression().fit(
            features, np.asarray(y, np.float64))
        w, b = fit.coef_.T, fit.intercept_
    _set_head(layer, w, b)
    return fit


def prune_for_task(model, curves, threshold=0.01, layer=None,
                   task="continuous", refit=None, min_filters=1,
                   batch_size=None):
    """Builds a small network for a satellite task from characteristic curves.

    Paper 001's cross-task pruning: (1) truncate the network after the best
    layer (`layer`, or the curve with the lowest validation RMSE) and put a
    global average pooling and a linear head there; (2) keep, in every
    remaining probed layer, only the filters of its curve's knee at
    `threshold`; (3) remove the rest with `keras_dynfilt.pruning.compact`.
    An MFM channel `k` keeps its producer's filters `k` and `k + N/2`. A
    channel of a coupled unit (a residual stream read by several probes) is
    removed only when every probe of that unit drops it (the union is
    kept); channels the pruning engine holds fixed stay. Both are reported
    in `held`. The head starts from the best curve's knee coefficients;
    `refit=(x, y)` refits it on the compacted network's pooled features.

    Args:
        model: A functional or built Sequential `keras.Model` (the primary
            network). It is not changed.
        curves: Dict `{layer_name: CharacteristicCurve}` of the probed
            layers, keyed as in `pooled_activations`.
        threshold: Float `t` in [0, 1] of the knees.
        layer: Optional name of the layer to truncate after (one of
            `curves`); default: the curve with the lowest validation RMSE.
        task: `"continuous"`, `"binary"`, `"ordinal"` (one linear output)
            or `"categorical"` (one output per column of the curves' target,
            logits after a refit).
        refit: Optional `(x, y)` (or batches of it) to refit the head on.
        min_filters: The fewest filters a knee may keep.
        batch_size: Batch size of the refit pass for NumPy inputs.

    Returns:
        A `TaskPruning`.

    Examples:

    A continuous task (the brightness of the top half of the image):

    >>> inputs = keras.Input((8, 8, 1))
    >>> h = keras.layers.Conv2D(4, 3, activation="relu", name="conv1")(inputs)
    >>> h = keras.layers.Conv2D(6, 3, activation="relu", name="conv2")(h)
    >>> h = keras.layers.GlobalAveragePooling2D()(h)
    >>> model = keras.Model(inputs, keras.layers.Dense(3)(h))
    >>> rng = np.random.default_rng(0)  # the same weights on every backend
    >>> model.set_weights(
    ...     [rng.normal(size=w.shape) for w in model.get_weights()])
    >>> x = rng.random((300, 8, 8, 1), "float32")
    >>> y = x[:, :4].mean(axis=(1, 2, 3))
    >>> ct = keras_dynfilt.cross_task
    >>> train = ct.pooled_activations(model, x[:200])
    >>> val = ct.pooled_activations(model, x[200:])
    >>> curves = {
    ...     name: ct.characteristic_curve(
    ...         train.features[name], y[:200], val.features[name], y[200:])
    ...     for name in train.features}
    >>> pruned = ct.prune_for_task(
    ...     model, curves, threshold=0.01, refit=(x[:200], y[:200]))
    >>> print(pruned.table())
    layer  channels  kept  filters before    after
    conv1         4     3               4        3
    conv2                                  removed
    dense                                  removed
    params 283 -> 34 (87.99% smaller); MACs 4,770 -> 975 (79.56% fewer)
    >>> pruned.model.predict(x[200:], verbose=0).shape
    (100, 1)
    """
    check_task(task)
    threshold = check_threshold(threshold)
    graph_of(model)
    if not isinstance(curves, dict) or not curves:
        raise ValueError(
            "`curves` must be a non-empty dict `{layer: "
            f"CharacteristicCurve}}`. Received: {curves!r}")
    for name, curve in curves.items():
        if not isinstance(curve, CharacteristicCurve):
            raise TypeError(
                f"`curves[{name!r}]` must be a CharacteristicCurve. "
                f"Received: {type(curve).__name__}")
    probes = probe_points(model, list(curves))
    channels = {}
    for name, probe in probes.items():
        channels[name] = int(probe.tensor.shape[-1])
        if curves[name].num_channels != channels[name]:
            raise ValueError(
                f"`curves[{name!r}]` has {curves[name].num_channels} "
                f"channels but the layer's probe ({probe.point!r}) has "
                f"{channels[name]}.")
    outputs = {curve.coefs.shape[-1] if curve.multi_output else 1
               for curve in curves.values()}
    if task == "categorical" and len(outputs) != 1:
        raise ValueError("The curves were fitted on different targets.")
    if layer is None:
        layer = min(curves, key=lambda n: curves[n].rmse.min())
    elif layer not in curves:
        raise ValueError(
            f"`layer` must be one of the curves' layers {list(curves)}. "
            f"Received: layer={layer!r}")
    best = curves[layer]
    n_out = best.coefs.shape[-1] if best.multi_output else 1

    # (1) Truncate: the original input to the best probe point, GAP, head.
    pool_name = unique_name(model, "task_pool")
    head_name = unique_name(model, "task_head")
    features = pooled(probes[layer].tensor, pool_name)
    pool_name = pool_name if features is not probes[layer].tensor else None
    head = keras.layers.Dense(n_out, name=head_name)
    inputs = model.inputs[0] if len(model.inputs) == 1 else model.inputs
    truncated = keras.Model(inputs, head(features), name=f"{model.name}_task")
    knees = {}
    remaining = {op.name for op in graph_operations(graph_of(truncated))}
    for name in curves:
        if name in remaining:
            knees[name] = curves[name].knee(threshold, min_filters)
    best_knee = knees[layer]
    w, b = best.linear_map(best_knee.index)
    _set_head(head, w, b)

    # (2) The knee filters -> the engine's units; the union over probes.
    graph = analyze(truncated)
    prunable = set(int(r) for r in graph.prunable_roots)
    roots_of, wanted = {}, collections.defaultdict(bool)
    for name, knee in knees.items():
        slots = graph.records[probes[name].point].out_slots[0]
        roots = graph.roots[np.asarray(slots, np.int64)]
        roots_of[name] = roots
        for root, keep in zip(roots, knee.keep):
            wanted[int(root)] |= bool(keep)
    removed = {r for r, keep in wanted.items() if not keep and r in prunable}
    held, kept = {}, {}
    for name, knee in knees.items():
        held[name] = {}
        for c, (root, keep) in enumerate(zip(roots_of[name], knee.keep)):
            root = int(root)
            if keep or root in removed:
                continue
            held[name][c] = (
                "kept by another probe of the same coupled unit"
                if wanted[root] else graph.fixed.get(root, "not prunable"))
        kept[name] = [c for c, root in enumerate(roots_of[name])
                      if int(root) not in removed]
    masks = {}
    for group in graph.groups:
        keep = np.array([int(r) not in removed for r in group._roots])
        if not keep.all():
            masks[group] = keep

    # (3) Compact with the engine; optional refit of the head.
    small = compact(truncated, masks=masks)
    if refit is not None:
        refit_head(small, head_name, refit, task, batch_size)
    original = {op.name for op in graph_operations(graph_of(model))}
    removed_ops = [
        op for op in graph_operations(graph_of(model))
        if op.name not in remaining
        and not isinstance(op, keras.layers.InputLayer)
    ]
    removed_layers = [op.name for op in removed_ops]
    widths = {}
    for op in graph_operations(graph_of(truncated)):
        if op.name in original and _width(op) is not None and op.weights:
            widths[op.name] = (_width(op), _width(small.get_layer(op.name)))
    return TaskPruning(
        small, layer, threshold, knees, kept, held, widths, removed_layers,
        model_cost(model), model_cost(small), head_name, pool_name, channels,
        [op.name for op in removed_ops if getattr(op, "weights", None)],
    )
