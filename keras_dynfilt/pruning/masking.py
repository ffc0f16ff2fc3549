"""Masking: zero a group's filters in the full-size model (soft pruning).

`apply_group_mask` (one group) and `apply_group_masks` (many at once, one
assignment per weight) zero, for every removed unit of a `FilterGroup`, all
the parameters that make the unit's channels exactly zero everywhere: the
producers' kernel slices and biases, the depthwise filters that follow the
channel, and the gamma and beta of every BatchNormalization that reads it
(BN maps a zero input to `beta - gamma * mean / sqrt(var + eps)`, which is
zero only once gamma and beta are). A model masked this way computes the
same function as the one `compact` builds from it.

Only `keras.ops` and `Variable.assign` are used, so masking runs on every
backend and, under `tf.distribute.MirroredStrategy`, in cross-replica
context (callbacks) it updates every replica's copy.
"""

import keras
import numpy as np
from keras import ops

from keras_dynfilt._validation import check_keep_mask
from keras_dynfilt.pruning.graph import FilterGroup, _variables


def _masked_axes(graph):
    """Yields `(variable, axis)` for every `WeightAxis` masking zeroes
    (`axis.zero`), layer by layer, the axes of one weight in a row."""
    for record in graph.records.values():
        if record.rule is None:
            continue
        variables = _variables(record.layer)
        for name, axes in record.rule.weights(
            record.layer, record.in_slots, record.out_slots
        ).items():
            for axis in axes:
                if axis.zero:
                    yield variables[name], axis


def _axis_roots(graph):
    """`(variable, [(axis, roots), ...])` for every weight masking zeroes:
    the root of each position along each of its zeroed axes (axes counted
    from 0), one entry per variable; one pass over the layers, cached on
    the graph."""
    if graph._axis_roots is None:
        found = {}
        for variable, axis in _masked_axes(graph):
            roots = graph.roots[np.asarray(axis.slots, np.int64)]
            ndim = len(variable.shape)
            found.setdefault(id(variable), (variable, []))[1].append(
                (axis.axis % ndim, roots)
            )
        graph._axis_roots = list(found.values())
    return graph._axis_roots


def _zero_targets_by_group(graph):
    """`(variable, axis, units)` targets of every group of `graph`, found
    in one pass over the layers (a pass per group made masking every group
    quadratic in the model's size); cached on the graph."""
    if graph._zero_targets is not None:
        return graph._zero_targets
    group_of_root = np.full(len(graph.roots), -1, np.int64)
    unit_of_root = np.full(len(graph.roots), -1, np.int64)
    for index, group in enumerate(graph.groups):
        group_of_root[group._roots] = index
        unit_of_root[group._roots] = np.arange(group.size)
    targets = {id(group): [] for group in graph.groups}
    for variable, axes in _axis_roots(graph):
        for axis, roots in axes:
            owners = group_of_root[roots]
            units = unit_of_root[roots]
            for index in np.unique(owners[owners >= 0]):
                targets[id(graph.groups[index])].append((
                    variable, axis, np.where(owners == index, units, -1),
                ))
    graph._zero_targets = targets
    return targets


def _zero_targets(group):
    """`(variable, axis, unit_index)` for every weight the group zeroes."""
    if group._zero_targets is None:
        group._zero_targets = _zero_targets_by_group(group.graph)[id(group)]
    return group._zero_targets


def _check_keep(group, keep, name):
    keep = check_keep_mask(keep, group.size, name)
    if not keep.any():
        # compact() refuses a model whose layer lost every channel.
        raise ValueError(
            f"`{name}` removes every unit of group {group.name!r}; keep at "
            "least one (a layer cannot lose all its filters)."
        )
    return keep


def apply_group_mask(group, keep):
    """Zeroes the removed units of a filter group in place.

    To mask many groups, `apply_group_masks` is faster: it writes each
    weight once, where a call per group rewrites a weight that several
    groups share (the BatchNormalization after a concatenation) once per
    group.

    Args:
        group: A `FilterGroup` from `filter_groups(model)`.
        keep: Boolean array of shape `(group.size,)`; `False` zeroes the
            unit: its producers' kernel slices and biases, the depthwise
            filters and BatchNormalization gamma/beta of its channels.

    Examples:
        >>> model = keras.Sequential([
        ...     keras.Input((8, 8, 3)),
        ...     keras.layers.Conv2D(8, 3, name="conv"),
        ...     keras.layers.GlobalAveragePooling2D(),
        ...     keras.layers.Dense(2, name="fc"),
        ... ])
        >>> groups = keras_dynfilt.pruning.filter_groups(model)
        >>> keep = np.ones(groups[0].size, bool)
        >>> keep[:2] = False
        >>> keras_dynfilt.pruning.apply_group_mask(groups[0], keep)
        >>> kernel = keras.ops.convert_to_numpy(model.get_layer("conv").kernel)
        >>> np.abs(kernel).sum(axis=(0, 1, 2)).round(3)[:3] == 0
        array([ True,  True, False])
    """
    if not isinstance(group, FilterGroup):
        raise TypeError(
            "`group` must be a FilterGroup from "
            "keras_dynfilt.pruning.filter_groups(model). Received: "
            f"group of type {type(group).__name__}"
        )
    keep = _check_keep(group, keep, "keep")
    assign_unit_mask(_zero_targets(group), keep)


def apply_group_masks(masks):
    """Zeroes the removed units of many filter groups at once, in place.

    The same as `apply_group_mask(group, keep)` for every item of `masks`,
    but each weight is read and assigned once, with the removed units of
    every group zeroed together: masking all the groups of a model costs
    one assignment per weight, not one per group and weight (on
    DenseNet, where a BatchNormalization after a concatenation belongs to
    every group concatenated, that was quadratic in a dense block's
    length).

    Args:
        masks: Dict mapping `FilterGroup`s (from `filter_groups(model)`)
            to boolean keep arrays of shape `(group.size,)`, as `compact`
            and `model_cost` take it.

    Examples:
        >>> model = keras.Sequential([
        ...     keras.Input((8, 8, 3)),
        ...     keras.layers.Conv2D(8, 3, name="conv1"),
        ...     keras.layers.Conv2D(4, 3, name="conv2"),
        ...     keras.layers.GlobalAveragePooling2D(),
        ...     keras.layers.Dense(2, name="fc"),
        ... ])
        >>> groups = keras_dynfilt.pruning.filter_groups(model)
        >>> masks = {g: np.arange(g.size) % 2 == 0 for g in groups}
        >>> keras_dynfilt.pruning.apply_group_masks(masks)
        >>> kernel = keras.ops.convert_to_numpy(model.get_layer("conv2").kernel)
        >>> (np.abs(kernel).sum(axis=(0, 1, 2)) == 0).tolist()
        [False, True, False, True]
    """
    if not isinstance(masks, dict):
        raise TypeError(
            "`masks` must be a dict mapping FilterGroups to boolean keep "
            "arrays. Received: masks of type "
            f"{type(masks).__name__}"
        )
    removed = {}  # id(graph) -> (graph, removed flag of every root)
    for group, keep in masks.items():
        if not isinstance(group, FilterGroup):
            raise TypeError(
                "`masks` must map FilterGroups from "
                "keras_dynfilt.pruning.filter_groups(model) to keep "
                f"arrays. Received: a key of type {type(group).__name__}"
            )
        keep = _check_keep(group, keep, f"masks[{group.name!r}]")
        if keep.all():
            continue
        graph = group.graph
        if id(graph) not in removed:
            removed[id(graph)] = (graph, np.zeros(len(graph.roots), bool))
        removed[id(graph)][1][group._roots[~keep]] = True
    kept = {}  # id(variable) -> (variable, {axis: keep of each position})
    for graph, gone in removed.values():
        for variable, axes in _axis_roots(graph):
            for axis, roots in axes:
                keep = ~gone[roots]
                if keep.all():
                    continue
                _, along = kept.setdefault(id(variable), (variable, {}))
                along[axis] = along[axis] & keep if axis in along else keep
    zeros = {}  # one scalar zero per dtype
    for variable, along in kept.values():
        if variable.dtype not in zeros:
            zeros[variable.dtype] = ops.zeros((), variable.dtype)
        _assign_kept(variable, along, zeros[variable.dtype])


def _assign_kept(variable, along, zero=None):
    """Zeroes, with one read and one assignment, the positions of
    `variable` that `along` (`{axis: boolean keep array}`) removes;
    `zero`: a scalar zero of the variable's dtype (made when None)."""
    ndim = len(variable.shape)
    mask = None
    for axis, keep in along.items():
        shape = [1] * ndim
        shape[axis] = len(keep)
        keep = keep.reshape(shape)
        mask = keep if mask is None else mask & keep
    if zero is None:
        zero = ops.zeros((), variable.dtype)
    variable.assign(ops.where(mask, variable.value, zero))


def assign_unit_mask(targets, keep):
    """Zeroes, in place, the slices of `targets` whose unit is not kept.

    Args:
        targets: Iterable of `(variable, axis, units)`: `units[i]` is the
            group unit that index `i` along `axis` belongs to (-1: none).
        keep: Boolean array, one entry per unit of the group.
    """
    extended = np.append(keep, True)  # index -1: not in this group
    for variable, axis, units in targets:
        mask = extended[units]
        if not mask.all():
            _assign_kept(variable, {axis % len(variable.shape): mask})


def removed_roots(graph):
    """The units a masked model has removed: the roots of the prunable
    units whose masked parameters are all zero (`compact` drops them)."""
    nonzero = np.zeros(len(graph.roots), bool)
    variable = value = None
    for masked, axis in _masked_axes(graph):
        if masked is not variable:  # one read per weight, not per axis
            variable = masked
            value = np.abs(keras.ops.convert_to_numpy(variable.value))
        other = tuple(
            a for a in range(value.ndim) if a != axis.axis % value.ndim
        )
        used = value.max(axis=other) > 0 if other else value > 0
        nonzero[graph.roots[np.asarray(axis.slots)][used]] = True
    return np.array(
        [r for r in graph.prunable_roots if not nonzero[r]], np.int64
    )


zero_units = removed_roots  # the older name (it returns roots, not units)
