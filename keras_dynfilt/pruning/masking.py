"""Masking: zero a group's filters in the full-size model (soft pruning).

`apply_group_mask` zeroes, for every removed unit of a `FilterGroup`, all
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
    for variable, axis in _masked_axes(graph):
        roots = graph.roots[np.asarray(axis.slots, np.int64)]
        owners = group_of_root[roots]
        units = unit_of_root[roots]
        for index in np.unique(owners[owners >= 0]):
            targets[id(graph.groups[index])].append((
                variable, axis.axis, np.where(owners == index, units, -1),
            ))
    graph._zero_targets = targets
    return targets


def _zero_targets(group):
    """`(variable, axis, unit_index)` for every weight the group zeroes."""
    if group._zero_targets is None:
        group._zero_targets = _zero_targets_by_group(group.graph)[id(group)]
    return group._zero_targets


def apply_group_mask(group, keep):
    """Zeroes the removed units of a filter group in place.

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
    keep = check_keep_mask(keep, group.size, "keep")
    if not keep.any():
        # compact() refuses a model whose layer lost every channel.
        raise ValueError(
            f"`keep` removes every unit of group {group.name!r}; keep at "
            "least one (a layer cannot lose all its filters)."
        )
    assign_unit_mask(_zero_targets(group), keep)


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
        if mask.all():
            continue
        shape = [1] * len(variable.shape)
        shape[axis] = len(mask)
        mask = ops.reshape(ops.convert_to_tensor(mask), shape)
        value = variable.value
        variable.assign(ops.where(mask, value, ops.zeros_like(value)))


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
