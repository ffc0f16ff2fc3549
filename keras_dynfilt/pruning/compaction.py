"""Compaction: rebuild a model without its removed filters."""

import keras
import numpy as np

from keras_dynfilt.pruning.graph import (
    FilterGroup,
    _variables,
    analyze,
    graph_of,
    is_graph_model,
    path_name,
)
from keras_dynfilt.pruning.masking import zero_units


def _removed_from_masks(graph, masks):
    """Roots removed by explicit masks (layer names or groups -> keep)."""
    if not isinstance(masks, dict):
        raise TypeError(
            "`masks` must be a dict mapping layer names or FilterGroups to "
            f"boolean keep arrays. Received: masks of type "
            f"{type(masks).__name__}"
        )
    wanted = {}  # root -> (keep, where)
    atom_root = {}
    for slot, atom in graph._atoms.items():
        atom_root[atom] = int(graph.roots[slot])
    prunable = set(int(r) for r in graph.prunable_roots)

    def request(root, keep, where):
        if root in wanted and wanted[root][0] != keep:
            raise ValueError(
                f"`masks` disagree on coupled filters: {where} and "
                f"{wanted[root][1]} must be kept or removed together."
            )
        wanted[root] = (keep, where)

    for key, keep in masks.items():
        keep = np.asarray(keep)
        if isinstance(key, FilterGroup):
            if key.graph.model is not graph.model:
                raise ValueError(
                    f"`masks` names group {key.name!r} of another model."
                )
            if keep.shape != (key.size,):
                raise ValueError(
                    f"`masks[{key.name!r}]` must have shape ({key.size},). "
                    f"Received: shape {keep.shape}"
                )
            for root, k, unit in zip(key._roots, keep, key.units):
                request(int(root), bool(k), f"unit {unit}")
            continue
        if key not in graph.layers:
            raise ValueError(
                f"`masks` names layer {key!r}, which is not a layer of the "
                f"model. Layers: {sorted(graph.layers)}"
            )
        count = sum(1 for atom in atom_root if atom[0] == key)
        if count == 0:
            raise ValueError(
                f"`masks` names layer {key!r}, which has no prunable filters."
            )
        if keep.shape != (count,):
            raise ValueError(
                f"`masks[{key!r}]` must have shape ({count},). "
                f"Received: shape {keep.shape}"
            )
        for i, k in enumerate(keep):
            root = atom_root[(key, i)]
            if not k and root not in prunable:
                raise ValueError(
                    f"Filter {i} of layer {key!r} cannot be removed: "
                    f"{graph.fixed.get(root, 'it is not prunable')}."
                )
            request(root, bool(k), f"filter {i} of {key!r}")
    return np.array(
        sorted(r for r, (k, _) in wanted.items() if not k), np.int64
    )


def _keeps(graph, record, removed):
    keep_in = [graph.keep_of(s, removed) for s in record.in_slots]
    keep_out = [graph.keep_of(s, removed) for s in record.out_slots]
    return keep_in, keep_out


def _check_nothing_empty(graph, removed):
    for name, record in graph.records.items():
        for slots in record.in_slots + record.out_slots:
            keep = graph.keep_of(slots, removed)
            if keep is not None and len(keep) and not keep.any():
                raise ValueError(
                    f"The masks remove every channel of layer {name!r}; keep "
                    "at least one filter in each group."
                )


_ZEROS = keras.saving.serialize_keras_object(keras.initializers.Zeros())


def _zero_initializers(config, layer, originals):
    """Builds with zeros: every weight is overwritten anyway, and random
    initializers of new shapes are slow to compile on JAX. The originals are
    put back on the new layer so its config is unchanged."""
    config = dict(config)
    for key, value in config.items():
        if key.endswith("_initializer") and value is not None and hasattr(
            layer, key
        ):
            originals[key] = getattr(layer, key)
            config[key] = _ZEROS
    return config


def _edit_config(graph, model, config, prefix, removed, initializers):
    config = dict(config)
    operations = {op.name: op for op in graph_of(model)._operations}
    layers = []
    for entry in config["layers"]:
        entry = dict(entry)
        entry.pop("build_config", None)
        name = entry["config"]["name"]
        path = prefix + (name,)
        layer = operations.get(name)
        if layer is not None and is_graph_model(layer):
            entry["config"] = _edit_config(
                graph, layer, entry["config"], path, removed, initializers
            )
        else:
            record = graph.records.get(path_name(path))
            if record is not None and record.rule is not None:
                keep_in, keep_out = _keeps(graph, record, removed)
                entry["config"] = record.rule.compact_config(
                    layer, entry["config"], keep_in, keep_out
                )
            entry["config"] = _zero_initializers(
                entry["config"], layer, initializers.setdefault(path, {})
            )
        layers.append(entry)
    config["layers"] = layers
    if "build_input_shape" in config and layers:
        first = layers[0]
        if first["class_name"] == "InputLayer":
            config["build_input_shape"] = first["config"]["batch_shape"]
    return config


def _copy_weights(graph, old_model, new_model, prefix, removed, initializers):
    new_operations = {op.name: op for op in graph_of(new_model)._operations}
    for old in graph_of(old_model)._operations:
        new = new_operations[old.name]
        path = prefix + (old.name,)
        if is_graph_model(old):
            _copy_weights(graph, old, new, path, removed, initializers)
            continue
        for key, initializer in initializers.get(path, {}).items():
            setattr(new, key, initializer)
        if not _variables(old):  # operation nodes have no weights at all
            continue
        record = graph.records.get(path_name(path))
        axes = {}
        if record is not None and record.rule is not None:
            keep_in, keep_out = _keeps(graph, record, removed)
            axes = record.rule.weights(old, record.in_slots, record.out_slots)
        # Same class, same config structure: the variables line up by
        # position (names may repeat across a layer's sublayers).
        new_variables = list(_variables(new).values())
        for (name, variable), target in zip(
            _variables(old).items(), new_variables
        ):
            value = keras.ops.convert_to_numpy(variable.value)
            for axis in axes.get(name, ()):
                value = np.compress(
                    graph.keep_of(axis.slots, removed), value, axis=axis.axis
                )
            target.assign(value)


def compact(model, masks=None):
    """Builds a physically smaller copy of a model without removed filters.

    Producers get fewer filters/units, BatchNormalization loses the matching
    entries, consumers (the next convolution or dense layer, the Dense after
    a Flatten, depthwise and grouped convolutions, option-A channel padding)
    lose the matching input channels, and every remaining weight is copied.
    The result is an ordinary Keras model of the same classes, rebuilt from
    the config (it saves to `.keras`, loads with `safe_mode=True`, exports
    and converts like the original); it is not compiled.

    By default the removed units are those whose masked parameters (see
    `apply_group_mask`: producer kernel slices and biases, BN gamma and
    beta, depthwise filters) are all exactly zero, which is what soft filter
    pruning leaves; such a model computes the same function as its compact
    version. Filters whose kernel alone is zero are kept.

    Args:
        model: A functional or built Sequential `keras.Model`.
        masks: Optional dict naming the filters to keep explicitly: keys are
            producer layer names (`"outer/inner"` inside nested models) or
            `FilterGroup`s, values boolean arrays (True = keep) of the
            layer's filter count or the group's size. Removing one filter
            removes its whole unit (the coupled filters of other layers
            too); named filters of one unit must agree. Filters not named
            are kept.

    Returns:
        A new `keras.Model` (same name and class).

    Example:

    >>> small = keras_dynfilt.pruning.compact(model)
    >>> small.count_params() < model.count_params()
    True
    """
    graph = analyze(model)
    if masks is None:
        removed = zero_units(graph)
    else:
        removed = _removed_from_masks(graph, masks)
    _check_nothing_empty(graph, removed)
    serialized = keras.saving.serialize_keras_object(model)
    serialized.pop("build_config", None)
    serialized.pop("compile_config", None)
    initializers = {}
    serialized["config"] = _edit_config(
        graph, model, serialized["config"], (), removed, initializers
    )
    new_model = keras.saving.deserialize_keras_object(serialized)
    _copy_weights(graph, model, new_model, (), removed, initializers)
    return new_model
