"""Cost accounting: parameters and multiply-adds per layer.

FLOPs are counted as **multiply-adds** (MACs, one multiplication plus one
addition), the convention of the SFP paper and most CNN papers; multiply by
two for floating-point operations. Counted: convolutions (plain, grouped,
depthwise, separable, transposed), dense layers, and normalisation layers
(one multiply-add per element: the folded scale and shift). Layers that only
compare, add or copy (activations, pooling, merges, MFM, padding, reshapes)
count zero. Each formula is the `macs` of the layer's `ChannelRule`
(`keras_dynfilt.pruning.rules`: the Keras layers, Keras ops, keras.applications'
and this library's layers), or one given to `register_layer_cost`. A layer
with weights but no formula is listed with
`macs=None` and left out of the total (see `ModelCost.unknown`): `model_cost`
warns, and `print_cost` marks the total incomplete and lists them; register a
formula with `register_layer_cost` (or give the layer's rule a `macs`).
"""

import collections
import math
import warnings

import keras
import numpy as np

from keras_dynfilt import _keras_private
from keras_dynfilt.pruning.graph import (
    FilterGroup,
    _variables,
    cached_analysis,
    graph_of,
    is_graph_model,
    path_name,
)
from keras_dynfilt.pruning.masking import zero_units
from keras_dynfilt.pruning.rules.base import (  # noqa: F401 - re-exported
    get_layer_cost,
    register_layer_cost,
)

LayerCost = collections.namedtuple(
    "LayerCost", ["name", "class_name", "output_shape", "params", "macs"]
)
LayerCost.__doc__ = """Cost of one layer call: `params` (counted at the first
call of a shared layer only) and `macs` (multiply-adds for one sample, or
`None` when no formula is known)."""


def _prod(dims):
    return math.prod(int(d) for d in dims)


class ModelCost:
    """Parameters and multiply-adds of a model, per layer and in total.

    Attributes:
        layers: List of `LayerCost`, one per layer call in graph order
            (nested models' layers as `"outer/inner"`).
        params: Integer, total parameters (`model.count_params()`).
        macs: Integer, total multiply-adds for one sample, over the layers
            with a cost formula only (a lower bound when `unknown` is not
            empty).
        unknown: Names of layers with weights but no cost formula.
        complete: Boolean, whether every layer was priced (`unknown` is
            empty), i.e. whether `macs` is the whole model's count.
    """

    def __init__(self, layers, params):
        self.layers = layers
        self.params = params
        self.macs = sum(c.macs for c in layers if c.macs)
        self.unknown = [c.name for c in layers if c.macs is None]
        self.complete = not self.unknown

    def _unknown_text(self):
        listed = ", ".join(
            f"{c.name} ({c.class_name})" for c in self.layers if c.macs is None
        )
        return (
            f"No cost formula for {len(self.unknown)} layer(s) with weights, "
            f"left out of the MACs total: {listed}. Register one with "
            "`keras_dynfilt.pruning.register_layer_cost`."
        )

    def table(self):
        """The per-layer table as a string."""
        rows = [("layer", "class", "output shape", "params", "MACs", "%")]
        for c in self.layers:
            if not c.params and not c.macs and c.macs is not None:
                continue
            share = f"{100 * c.macs / self.macs:.1f}" if (
                c.macs and self.macs
            ) else ""
            rows.append((
                c.name, c.class_name, str(c.output_shape), f"{c.params:,}",
                "?" if c.macs is None else f"{c.macs:,}", share,
            ))
        total = "total" if self.complete else "total (incomplete)"
        rows.append(
            (total, "", "", f"{self.params:,}", f"{self.macs:,}", "100.0")
        )
        widths = [max(len(r[i]) for r in rows) for i in range(6)]
        lines = []
        for i, row in enumerate(rows):
            lines.append(
                "  ".join(
                    cell.ljust(w) if j < 3 else cell.rjust(w)
                    for j, (cell, w) in enumerate(zip(row, widths))
                )
            )
            if i == 0 or i == len(rows) - 2:
                lines.append("  ".join("-" * w for w in widths))
        lines.append("MACs: multiply-adds per sample (FLOPs = 2 x MACs).")
        if self.unknown:
            lines.append("Incomplete total. " + self._unknown_text())
        return "\n".join(lines)

    def __str__(self):
        return self.table()

    def as_dict(self):
        return {
            "params": self.params,
            "macs": self.macs,
            "unknown": list(self.unknown),
            "layers": [c._asdict() for c in self.layers],
        }


def _with_channels(shapes, keeps):
    if keeps is None:
        return shapes
    return [
        shape if keep is None else shape[:-1] + (int(keep.sum()),)
        for shape, keep in zip(shapes, keeps)
    ]


def _compacted_params(layer, record, keep_of):
    axes = record.rule.weights(layer, record.in_slots, record.out_slots)
    total = 0
    for name, variable in _variables(layer).items():
        shape = list(variable.shape)
        for axis in axes.get(name, ()):
            shape[axis.axis] = int(keep_of(axis.slots).sum())
        total += _prod(shape)
    return total


def _walk(model, input_specs, prefix, seen, found, pruned=None, calls=None):
    graph = graph_of(model)
    values = {id(x): spec for x, spec in zip(graph.inputs, input_specs)}
    for node in _keras_private.graph_nodes(graph):
        op = node.operation
        path = prefix + (op.name,)
        if is_graph_model(op):
            ins = [values[id(t)] for t in node.input_tensors]
            outs = _walk(op, ins, path, seen, found, pruned, calls)
        else:
            outs = _recorded_outputs(node, values)
            if outs is None:
                args, kwargs = node.arguments.fill_in(values)
                spec = op.compute_output_spec(*args, **kwargs)
                outs = keras.tree.flatten(spec)
            in_shapes = [tuple(values[id(t)].shape)
                         for t in node.input_tensors]
            out_shapes = [tuple(o.shape) for o in outs]
            # Keras ops applied to tensors are operations, not layers.
            weights = _variables(op)
            params = sum(_prod(v.shape) for v in weights.values())
            record = None if pruned is None else pruned[0].records.get(
                path_name(path)
            )
            if record is not None:
                channels, removed = pruned
                keep_in = [channels.keep_of(x, removed)
                           for x in record.in_slots]
                keep_out = [channels.keep_of(x, removed)
                            for x in record.out_slots]
                in_shapes = _with_channels(in_shapes, keep_in)
                out_shapes = _with_channels(out_shapes, keep_out)
                if record.rule is not None and weights:
                    params = _compacted_params(
                        op, record,
                        lambda slots: channels.keep_of(slots, removed),
                    )
            shown = [(None,) + s[1:] for s in out_shapes]
            fn = get_layer_cost(op)
            if record is not None and record.rule is not None and (
                fn == record.rule.macs  # not a `register_layer_cost` one
            ):
                # Internal units (attention heads) show in no shape.
                macs = record.rule.compacted_macs(
                    op, in_shapes, out_shapes, keep_out
                )
            else:
                macs = None if fn is None else fn(op, in_shapes, out_shapes)
            if macs is not None:
                macs = int(macs)
            elif weights:
                macs = None
            else:
                macs = 0
            first = id(op) not in seen
            params = params if first else 0
            seen.add(id(op))
            if calls is not None:
                calls.append(
                    (op, path_name(path), in_shapes, out_shapes, first)
                )
            found.append(LayerCost(
                path_name(path), type(op).__name__,
                shown[0] if len(shown) == 1 else shown,
                params, macs,
            ))
        for tensor, spec in zip(node.output_tensors, outs):
            values[id(tensor)] = spec
    return [values[id(t)] for t in graph.outputs]


def _recorded_outputs(node, values):
    """The node's output specs as the graph recorded them, when its inputs
    have the recorded shapes (the batch axis aside) and its outputs are
    fully defined: Keras inferred them from those very shapes, and asking
    it again (`compute_output_spec`) is most of the walk's time."""
    for t in node.input_tensors:
        if tuple(values[id(t)].shape[1:]) != tuple(t.shape[1:]):
            return None
    outs = []
    for t in node.output_tensors:
        shape = tuple(t.shape)
        if not shape or any(d is None for d in shape[1:]):
            return None
        outs.append(keras.KerasTensor((1,) + shape[1:], dtype=t.dtype))
    return outs


def _check_input_shapes(shapes, inputs, input_shape):
    """`input_shape` may only fill in the model's undefined dimensions."""
    for shape, x in zip(shapes, inputs):
        built = tuple(x.shape[1:])
        if any(
            isinstance(d, bool) or not isinstance(d, (int, np.integer))
            or d < 1
            for d in shape
        ):
            raise ValueError(
                "`input_shape` must have positive integer dimensions. "
                f"Received: input_shape={input_shape!r}"
            )
        if len(shape) != len(built) or any(
            b is not None and b != d for b, d in zip(built, shape)
        ):
            raise ValueError(
                f"`input_shape` {shape} does not fit the model's input "
                f"{built}: it may only fill in the undefined (None) "
                "dimensions; the model's weights fix the others (e.g. the "
                f"channels). Received: input_shape={input_shape!r}"
            )


def _input_shapes(graph, input_shape):
    """One fully defined shape (no batch axis) per input of the graph."""
    if input_shape is None:
        shapes = [tuple(x.shape[1:]) for x in graph.inputs]
    elif input_shape and isinstance(input_shape[0], (tuple, list)):
        shapes = [tuple(s) for s in input_shape]
    else:
        shapes = [tuple(input_shape)]
    if len(shapes) != len(graph.inputs) or any(
        d is None for s in shapes for d in s
    ):
        raise ValueError(
            "`input_shape` must give a fully defined shape (without the "
            f"batch axis) for each of the model's {len(graph.inputs)} "
            f"input(s). Received: input_shape={input_shape!r}"
        )
    if input_shape is not None:
        _check_input_shapes(shapes, graph.inputs, input_shape)
    return shapes


def _removed_units(model, masks):
    """`(graph, removed roots)` for `masks` as `compact` reads them."""
    # Imported here: compaction prices nothing, but imports this package.
    from keras_dynfilt.pruning.compaction import (
        _check_masks,
        _check_nothing_empty,
        _removed_from_masks,
    )

    _check_masks(masks)
    graphs = {id(k.graph): k.graph for k in masks if isinstance(k, FilterGroup)}
    graph = next(iter(graphs.values())) if len(graphs) == 1 else None
    # The groups' analysis when it is the model's and still current, else
    # the model's latest (layer names: the model's current graph).
    graph = cached_analysis(model, graph)
    removed = graph.removed_lookup(_removed_from_masks(graph, masks))
    _check_nothing_empty(graph, removed)
    return graph, removed


def model_cost(
    model, input_shape=None, compacted=False, warn=True, masks=None
):
    """Counts parameters and multiply-adds per layer and in total.

    With `compacted=True` it prices the model `compact(model)` would build
    (units whose masked parameters are all zero removed), and with `masks`
    the model `compact(model, masks)` would build, without building it:
    cheap enough for a pruning callback to log every epoch, or for a
    search over masks (`keras_dynfilt.pruning.prune`) to price each
    candidate.

    Args:
        model: A functional or built Sequential `keras.Model`.
        input_shape: Optional shape of one input without the batch axis
            (or a list of shapes for several inputs), for models whose
            input size is not fixed; defaults to the model's input shapes.
        compacted: Boolean, price the compacted model instead (params
            of the whole model are then the sum of the per-layer counts).
        masks: Optional dict, as `compact` takes it (`FilterGroup`s of
            `filter_groups(model)` or producer layer names mapped to
            boolean keep arrays): price the model without the units they
            remove. The model's weights are not read.
        warn: Boolean, whether to warn (`UserWarning`) when layers with
            weights have no cost formula: `macs` then leaves them out, and
            a fraction of it is a fraction of part of the network.

    Returns:
        A `ModelCost` (`.params`, `.macs`, `.layers`, `.table()`).

    Examples:
        >>> inputs = keras.Input((8, 8, 3))
        >>> x = keras.layers.Conv2D(8, 3, name="conv")(inputs)
        >>> x = keras.layers.GlobalAveragePooling2D()(x)
        >>> model = keras.Model(inputs, keras.layers.Dense(2, name="fc")(x))
        >>> cost = keras_dynfilt.pruning.model_cost(model)
        >>> print(cost.table())
        layer  class   output shape     params   MACs      %
        -----  ------  ---------------  ------  -----  -----
        conv   Conv2D  (None, 6, 6, 8)     224  7,776   99.8
        fc     Dense   (None, 2)            18     16    0.2
        -----  ------  ---------------  ------  -----  -----
        total                              242  7,792  100.0
        MACs: multiply-adds per sample (FLOPs = 2 x MACs).
    """
    if input_shape is not None and not isinstance(input_shape, (tuple, list)):
        raise TypeError(
            "`input_shape` must be None, a tuple of dimensions or a list of "
            f"tuples. Received: input_shape={input_shape!r}"
        )
    from keras_dynfilt.pruning.tracing import trace

    model = trace(model)
    graph = graph_of(model)
    shapes = _input_shapes(graph, input_shape)
    if compacted and masks is not None:
        raise ValueError(
            "Pass `compacted=True` (price the zeroed units) or `masks` "
            "(price the given ones), not both."
        )
    pruned = None
    if compacted:
        pruned_graph = cached_analysis(model)
        pruned = (
            pruned_graph,
            pruned_graph.removed_lookup(zero_units(pruned_graph)),
        )
    elif masks is not None:
        pruned = _removed_units(model, masks)
    specs = [
        keras.KerasTensor((1,) + s, dtype=x.dtype)
        for s, x in zip(shapes, graph.inputs)
    ]
    found = []
    _walk(model, specs, (), set(), found, pruned)
    params = model.count_params()
    if pruned is not None:
        params = sum(c.params for c in found)
    cost = ModelCost(found, params)
    if warn and not cost.complete:
        warnings.warn(
            f"model_cost of {model.name!r} is incomplete: "
            + cost._unknown_text(),
            UserWarning,
            stacklevel=2,
        )
    return cost


class _MaskPricer:
    """`model_cost(model, masks=...)`'s totals for many masks, fast.

    A search over masks (`prune` with a MACs or params target) prices tens
    of candidates of one model. `model_cost` walks the whole graph for each
    (and asks Keras for the output shapes of every layer whose channels
    changed); here the walk runs once: the layers no prunable channel
    reaches are priced once, and a candidate re-prices only the others,
    from their recorded shapes with the kept channel counts put in (the
    same formulas and shapes as `model_cost(masks=...)`, so the same
    totals; `prune` checks its final candidate with `model_cost`).

    Args:
        graph: The `ChannelGraph` of the groups the masks remove from.
        input_shape: As in `model_cost`.
    """

    def __init__(self, graph, input_shape=None):
        model = graph.model
        inputs = graph_of(model).inputs
        specs = [
            keras.KerasTensor((1,) + s, dtype=x.dtype)
            for s, x in zip(_input_shapes(graph_of(model), input_shape), inputs)
        ]
        found, calls = [], []
        _walk(model, specs, (), set(), found, calls=calls)
        self.graph = graph
        prunable = np.zeros(len(graph.roots), bool)
        prunable[graph.prunable_roots] = True
        self.macs, self.params = 0, 0  # of the layers no mask changes
        self._entries = []
        for cost, (op, name, in_shapes, out_shapes, first) in zip(
            found, calls
        ):
            record = graph.records.get(name)
            roots = None if record is None else (
                [self._roots(s) for s in record.in_slots],
                [self._roots(s) for s in record.out_slots],
            )
            if roots is None or not any(
                r is not None and prunable[r].any()
                for r in roots[0] + roots[1]
            ):
                self.macs += cost.macs or 0
                self.params += cost.params
                continue
            params = cost.params
            axes = None
            if first and record.rule is not None and _variables(op):
                axes = self._weight_axes(op, record)
            self._entries.append((
                op, get_layer_cost(op), in_shapes, out_shapes, roots,
                params if first else 0, axes,
            ))

    def _roots(self, slots):
        if slots is None:
            return None
        return self.graph.roots[np.asarray(slots, np.int64)]

    def _weight_axes(self, layer, record):
        """`[(shape, [(axis, roots)])]` per weight (`_compacted_params`)."""
        axes = record.rule.weights(layer, record.in_slots, record.out_slots)
        return [
            (
                list(variable.shape),
                [(a.axis, self._roots(a.slots)) for a in axes.get(name, ())],
            )
            for name, variable in _variables(layer).items()
        ]

    def removed(self, removed_roots):
        """The boolean lookup `price` takes, from removed roots."""
        return self.graph.removed_lookup(removed_roots)

    def price(self, removed):
        """`(macs, params)` without the roots `removed` (a boolean lookup
        over the graph's roots) marks."""
        macs, params = self.macs, self.params

        def kept(roots):
            return int(len(roots) - np.count_nonzero(removed[roots]))

        def with_channels(shapes, roots):
            return [
                shape if r is None else shape[:-1] + (kept(r),)
                for shape, r in zip(shapes, roots)
            ]

        for op, fn, in_shapes, out_shapes, roots, full, axes in self._entries:
            if fn is not None:
                value = fn(
                    op,
                    with_channels(in_shapes, roots[0]),
                    with_channels(out_shapes, roots[1]),
                )
                macs += 0 if value is None else int(value)
            if axes is None:
                params += full
                continue
            for shape, weight_axes in axes:
                shape = list(shape)
                for axis, r in weight_axes:
                    shape[axis] = kept(r)
                params += _prod(shape)
        return macs, params


def print_cost(model, input_shape=None, print_fn=print):
    """Prints `model_cost(model, input_shape).table()`.

    Layers without a cost formula show `?` and are listed below the table,
    whose total then reads "total (incomplete)".
    """
    print_fn(model_cost(model, input_shape, warn=False).table())


def macs_reduction(full, small):
    """The fraction of multiply-adds a smaller model saves: `1 - small /
    full` (the "FLOPs reduction" of the SFP paper's tables).

    Args:
        full: `ModelCost` of the full-size model.
        small: `ModelCost` of the pruned (compacted) model.

    Returns:
        A float: 0.4 when the small model needs 60% of the full one's MACs.

    Examples:
        >>> def dense_cost(units):
        ...     model = keras.Sequential(
        ...         [keras.Input((4,)), keras.layers.Dense(units)])
        ...     return keras_dynfilt.pruning.model_cost(model)
        >>> keras_dynfilt.pruning.macs_reduction(dense_cost(10), dense_cost(6))
        0.4
    """
    for name, value in (("full", full), ("small", small)):
        if not isinstance(value, ModelCost):
            raise TypeError(
                f"`{name}` must be a ModelCost (from `model_cost(model)`). "
                f"Received: {name} of type {type(value).__name__}"
            )
    if full.macs <= 0:
        raise ValueError(
            "`full` must count some multiply-adds to compare against. "
            f"Received: full.macs={full.macs}"
        )
    return 1 - small.macs / full.macs
