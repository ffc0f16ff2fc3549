"""Compaction: rebuild a model without its removed filters."""

import collections
import logging
import warnings

import keras
import numpy as np

from keras_dynfilt import _keras_private
from keras_dynfilt._keras_private import graph_operations
from keras_dynfilt._validation import check_bool, check_keep_mask
from keras_dynfilt.pruning.compaction_difference import CompactionDifference
from keras_dynfilt.pruning.graph import (
    FilterGroup,
    _graph_base,
    _variables,
    cached_analysis,
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
    # One (roots, keep) array pair per key, checked together with NumPy:
    # a Python call per unit made pricing a mask cost more than the walk.
    roots, keeps, sources = [], [], []
    index = None
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
            roots.append(np.asarray(key._roots, np.int64))
            keeps.append(keep.astype(bool))
            sources.append(key)
            continue
        if index is None:
            index = _atom_index(graph)
        atom_roots, prunable = index
        if key not in graph.layers:
            raise ValueError(
                f"`masks` names layer {key!r}, which is not a layer of the "
                f"model. Layers: {sorted(graph.layers)}"
            )
        layer_roots = atom_roots.get(key)
        if layer_roots is None:
            raise ValueError(
                f"`masks` names layer {key!r}, which has no prunable filters."
            )
        if keep.shape != (len(layer_roots),):
            raise ValueError(
                f"`masks[{key!r}]` must have shape ({len(layer_roots)},). "
                f"Received: shape {keep.shape}"
            )
        keep = keep.astype(bool)
        fixed = ~keep & ~np.isin(layer_roots, prunable)
        if fixed.any():
            i = int(np.flatnonzero(fixed)[0])
            raise ValueError(
                f"Filter {i} of layer {key!r} cannot be removed: "
                f"{graph.fixed.get(int(layer_roots[i]), 'it is not prunable')}."
            )
        roots.append(layer_roots)
        keeps.append(keep)
        sources.append(key)
    if not roots:
        return np.zeros(0, np.int64)
    all_roots = np.concatenate(roots)
    all_keeps = np.concatenate(keeps)
    removed = np.unique(all_roots[~all_keeps])
    kept = np.unique(all_roots[all_keeps])
    clash = np.intersect1d(removed, kept)
    if clash.size:
        _raise_clash(int(clash[0]), roots, keeps, sources)
    return removed


def _atom_index(graph):
    """Layer path -> roots of its filters in order, and the prunable roots."""
    per_layer = collections.defaultdict(dict)
    for slot, (path, i) in graph._atoms.items():
        per_layer[path][i] = int(graph.roots[slot])
    atom_roots = {
        path: np.array([by_index[i] for i in sorted(by_index)], np.int64)
        for path, by_index in per_layer.items()
    }
    return atom_roots, np.asarray(graph.prunable_roots, np.int64)


def _unit_label(key, i):
    """How a clash names unit `i` of a mask's key (a group or a layer)."""
    if isinstance(key, FilterGroup):
        return f"unit {key.units[i]}"
    return f"filter {i} of {key!r}"


def _raise_clash(root, roots, keeps, sources):
    seen = []
    for r, k, key in zip(roots, keeps, sources):
        for i in np.flatnonzero(r == root):
            seen.append((bool(k[i]), _unit_label(key, int(i))))
    first = seen[0]
    other = next(s for s in seen if s[0] != first[0])
    # Name the later mask first, as the check did when it ran unit by unit.
    raise ValueError(
        f"`masks` disagree on coupled filters: {other[1]} and "
        f"{first[1]} must be kept or removed together."
    )


def _keeps(graph, record, removed):
    keep_in = [graph.keep_of(s, removed) for s in record.in_slots]
    keep_out = [graph.keep_of(s, removed) for s in record.out_slots]
    return keep_in, keep_out


def _check_masks(masks):
    if not isinstance(masks, dict):
        raise TypeError(
            "`masks` must be a dict mapping layer names or FilterGroups to "
            "boolean keep arrays. Received: masks of type "
            f"{type(masks).__name__}"
        )
    for key, keep in masks.items():
        # Booleans only: an index array read as a mask removes other filters.
        where = key.name if isinstance(key, FilterGroup) else key
        check_keep_mask(keep, None, f"masks[{where!r}]")


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


def _settable(layer, key):
    """Whether `layer.key` is a plain attribute (RNN layers expose their
    cell's initializers as read-only properties)."""
    if not hasattr(layer, key):
        return False
    found = getattr(type(layer), key, None)
    return not isinstance(found, property) or found.fset is not None


def _zero_initializers(config, layer, originals):
    """Builds with zeros: every weight is overwritten anyway, and random
    initializers of new shapes are slow to compile on JAX. The originals are
    put back on the new layer so its config is unchanged."""
    config = dict(config)
    for key, value in config.items():
        if key.endswith("_initializer") and value is not None and _settable(
            layer, key
        ):
            originals[key] = getattr(layer, key)
            config[key] = _ZEROS
    return config


def _plain_serialization(model):
    """The graph of a model subclass serialized as a plain functional (or
    Sequential) model: the same layers, none of the subclass's own config."""
    if _graph_base(model) is keras.Sequential:
        plain = {
            "module": "keras",
            "class_name": "Sequential",
            "config": keras.Sequential.get_config(model),
            "registered_name": None,
        }
    else:
        wrapper = keras.Model(
            *_keras_private.graph_structures(model), name=model.name,
            trainable=model.trainable,
        )
        plain = keras.saving.serialize_keras_object(wrapper)
    plain.pop("build_config", None)
    plain.pop("compile_config", None)
    return plain


class _Report:
    """How the model subclasses of a model are rebuilt.

    A subclass of `Functional` / `Sequential` is rebuilt as its own class
    when its config lists its layers (Keras revives it through the class's
    `from_config`); one whose config holds constructor arguments would come
    back at the original widths, so its graph is rebuilt as a plain
    functional (or Sequential) model instead.
    """

    def __init__(self, force_plain=None):
        self.force_plain = force_plain  # reason to rebuild every one plain
        self.own_class = []  # (path, class name)
        self.plain = []  # (path, class name, reason)


def _graph_entry(graph, model, entry, prefix, removed, initializers, report):
    """The edited serialization of a (nested) graph model."""
    entry = dict(entry)
    if type(model) is not _graph_base(model):  # a subclass
        where = (path_name(prefix) or model.name, type(model).__name__)
        config = entry.get("config")
        layers = config.get("layers") if isinstance(config, dict) else None
        reason = report.force_plain
        if reason is None and (
            not isinstance(layers, list)
            or len(layers) != len(graph_operations(graph_of(model)))
        ):
            keys = sorted(config) if isinstance(config, dict) else []
            reason = (
                f"its config (keys: {', '.join(keys)}) does not list its "
                "layers, so Keras would rebuild it through its constructor, "
                "at the original widths"
            )
        if reason is None:
            report.own_class.append(where)
        else:
            report.plain.append(where + (reason,))
            entry.update(_plain_serialization(model))
    entry["config"] = _edit_config(
        graph, model, entry["config"], prefix, removed, initializers, report
    )
    return entry


def _edit_config(graph, model, config, prefix, removed, initializers, report):
    config = dict(config)
    # Config entries and graph operations line up by position (names may
    # change through get_config / from_config, or be missing from a config).
    operations = graph_operations(graph_of(model))
    if len(config["layers"]) != len(operations):
        raise RuntimeError(
            f"The config of model {model.name!r} lists "
            f"{len(config['layers'])} layers, its graph has "
            f"{len(operations)} operations."
        )
    layers = []
    for entry, layer in zip(config["layers"], operations):
        entry = dict(entry)
        entry.pop("build_config", None)
        path = prefix + (layer.name,)
        if is_graph_model(layer):
            entry = _graph_entry(
                graph, layer, entry, path, removed, initializers, report
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
    old_operations = graph_operations(graph_of(old_model))
    new_operations = graph_operations(graph_of(new_model))
    if len(new_operations) != len(old_operations):
        raise ValueError(
            f"The rebuilt model {new_model.name!r} has {len(new_operations)} "
            f"operations, the original {len(old_operations)}."
        )
    for old, new in zip(old_operations, new_operations):
        path = prefix + (old.name,)
        if is_graph_model(old) and is_graph_model(new):
            _copy_weights(graph, old, new, path, removed, initializers)
            continue
        if type(new) is not type(old):
            raise ValueError(
                "The rebuilt model does not line up with the original at "
                f"{path_name(path)!r}: a {type(old).__name__} became a "
                f"{type(new).__name__}."
            )
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
        values = {}
        for name, variable in _variables(old).items():
            value = variable.value  # unsliced: no round trip through NumPy
            for axis in axes.get(name, ()):
                keep = graph.keep_of(axis.slots, removed)
                if keep.all():
                    continue
                value = np.compress(
                    keep, keras.ops.convert_to_numpy(value), axis=axis.axis
                )
            values[name] = value
        if axes:
            values = record.rule.compact_weights(old, values, keep_in, keep_out)
        for value, target in zip(values.values(), new_variables):
            if not isinstance(value, np.ndarray):
                # A copy, not the old variable's buffer: JAX donates a
                # model's buffers when it trains, which would delete the
                # other model's weights too.
                value = keras.ops.copy(value)
            target.assign(value)


def _third_party(layer):
    module = type(layer).__module__ or ""
    return not module.startswith(("keras.", "keras_dynfilt."))


def _check_round_trip(graph):
    """Third-party layers (not traced: barriers, layers with a registered
    rule) are rebuilt from their own config, as `.keras` loading does;
    one that cannot be (a `get_config` its `__init__` rejects, a `build`
    that fails on the shapes of its config) is named, with the defect."""
    from keras_dynfilt.pruning.tracing import refusal

    for path, record in graph.records.items():
        layer = record.layer
        if not _third_party(layer) or is_graph_model(layer):
            continue
        try:
            copy = type(layer).from_config(layer.get_config())
            build = layer.get_build_config()
            if build is not None:
                copy.build_from_config(build)
        except Exception as e:  # noqa: BLE001 - reported with the layer
            why = refusal(layer)
            traced = f" It could not be traced: {why}" if why else ""
            raise ValueError(
                f"compact cannot rebuild layer {path!r} "
                f"({type(layer).__module__}.{type(layer).__name__}) from "
                "its own config, as `.keras` loading would: "
                f"`from_config(get_config())` then `build` fails with "
                f"{type(e).__name__}: {str(e).splitlines()[0][:200]}. "
                "This is a defect of that layer (its config does not "
                f"rebuild it), not of the model.{traced}"
            ) from e


def _rebuild(graph, model, removed, report):
    _check_round_trip(graph)
    serialized = keras.saving.serialize_keras_object(model)
    serialized.pop("build_config", None)
    serialized.pop("compile_config", None)
    initializers = {}
    serialized = _graph_entry(
        graph, model, serialized, (), removed, initializers, report
    )
    new_model = keras.saving.deserialize_keras_object(serialized)
    _copy_weights(graph, model, new_model, (), removed, initializers)
    return new_model


def _rebuild_reported(graph, model, removed):
    """The compact model and the `_Report` of how it was rebuilt."""
    report = _Report()
    try:
        return _rebuild(graph, model, removed, report), report
    except Exception as e:  # noqa: BLE001 - retried plain, reported
        if not report.own_class:
            raise
        # A subclass's `from_config` could not rebuild it from its edited
        # config (or rebuilt something else): rebuild its graph plain.
        message = str(e).split(". ")[0]
        if len(message) > 160:
            message = message[:160] + "..."
        report = _Report(
            "rebuilding it from its edited config failed "
            f"({type(e).__name__}: {message})"
        )
    return _rebuild(graph, model, removed, report), report


def _outputs(model, data):
    outputs = model(data, training=False)
    return [keras.ops.convert_to_numpy(o) for o in keras.tree.flatten(outputs)]


def _inexact_layers(graph, removed):
    """Paths of the layers whose rule makes slicing them inexact (a
    normalisation over channels) and that lose input channels."""
    found = []
    for name, record in graph.records.items():
        if not getattr(record.rule, "inexact_when_sliced", False):
            continue
        keep_in, _ = _keeps(graph, record, removed)
        if keep_in and keep_in[0] is not None and not keep_in[0].all():
            found.append(name)
    return found


def _analysis_of(model, masks, exact=True):
    """The analysis behind the masks' groups, else the model's latest one
    (see `cached_analysis`): analysing again costs as much as rebuilding."""
    graphs = {
        id(key.graph): key.graph
        for key in masks or () if isinstance(key, FilterGroup)
    }
    given = next(iter(graphs.values())) if len(graphs) == 1 else None
    return cached_analysis(model, given, exact)


def compact(model, masks=None, exact=True, data=None):
    """Builds a physically smaller copy of a model without removed filters.

    Producers get fewer filters/units, BatchNormalization loses the matching
    entries, consumers (the next convolution or dense layer, the Dense after
    a Flatten, depthwise and grouped convolutions, option-A channel padding)
    lose the matching input channels, and every remaining weight is copied.
    The result is an ordinary Keras model of the same classes, rebuilt from
    the config (it saves to `.keras`, loads with `safe_mode=True`, exports
    and converts like the original); it is not compiled. Layers are matched
    to their rebuilt copies by position in the graph, so layers whose names
    change through `get_config` / `from_config` (or are not in their config)
    are fine.

    Custom layers and models with a hand-written `call` are traced first
    (`keras_dynfilt.pruning.trace`): each traced block comes back as a
    functional model of its compacted parts (a `UserWarning` names them).

    A subclass of `keras.Model` whose `__init__` builds a graph (a backbone
    as model libraries write them, top-level or used as a layer) comes back
    as its own class when its config lists its layers (Keras then rebuilds
    it through the class's `from_config`). One whose config holds
    constructor arguments would come back at its original widths: its graph
    is rebuilt as a plain functional `keras.Model` instead, with the same
    layers and compacted weights, and a `UserWarning` names it.

    By default the removed units are those whose masked parameters (see
    `apply_group_mask`: producer kernel slices and biases, BN gamma and
    beta, depthwise filters) are all exactly zero, which is what soft filter
    pruning leaves; such a model computes the same function as its compact
    version. Filters whose kernel alone is zero are kept.

    Args:
        model: A functional or built Sequential `keras.Model`, or a subclass
            whose `__init__` calls `super().__init__(inputs, outputs)`.
        masks: Optional dict naming the filters to keep explicitly: keys are
            producer layer names (`"outer/inner"` inside nested models) or
            `FilterGroup`s, values boolean arrays (True = keep) of the
            layer's filter count or the group's size. Removing one filter
            removes its whole unit (the coupled filters of other layers
            too); named filters of one unit must agree. Filters not named
            are kept.
        exact: Boolean. True (the default): the removable units are those
            `filter_groups(model)` lists, and the result computes the same
            function. False (the *inexact mode*, as
            `filter_groups(model, exact=False)`): units whose channels
            feed a LayerNormalization / RMSNormalization over channels may
            be removed too, with the norm's gamma/beta entries; the norm's
            statistics lose channels, so the function changes. `data` is
            then required, and the measured difference is reported.
        data: Optional input batch (what `model(data)` accepts). When
            given, both models are run on it and the returned model gets a
            `compaction_difference` attribute (`CompactionDifference`:
            largest and mean absolute output difference, the
            normalisations that lost channels); in the inexact mode a
            `UserWarning` states it too.

    Returns:
        A new `keras.Model` (same name; same class, except for the model
        subclasses rebuilt as plain functional models, see above).

    Examples:
        >>> inputs = keras.Input((8, 8, 3))
        >>> x = keras.layers.Conv2D(8, 3, name="conv")(inputs)
        >>> x = keras.layers.GlobalAveragePooling2D()(x)
        >>> model = keras.Model(inputs, keras.layers.Dense(2, name="fc")(x))
        >>> group = keras_dynfilt.pruning.filter_groups(model)[0]
        >>> keep = np.arange(8) % 2 == 0  # keep 4 of the 8 filters
        >>> keras_dynfilt.pruning.apply_group_mask(group, keep)  # zero 4
        >>> small = keras_dynfilt.pruning.compact(model)  # drop the zeros
        >>> small.get_layer("conv").filters
        4
        >>> x = np.random.default_rng(0).random((2, 8, 8, 3), "float32")
        >>> masked = keras.ops.convert_to_numpy(model(x))
        >>> np.allclose(masked, keras.ops.convert_to_numpy(small(x)), atol=1e-5)
        True
    """
    if masks is not None:
        _check_masks(masks)
    exact = check_bool(exact, "exact")
    if not exact and data is None:
        raise ValueError(
            "`data` is required when `exact=False`: the inexact mode changes "
            "the model's function, and `compact` measures and reports by "
            "how much on that data. Received: data=None"
        )
    graph = _analysis_of(model, masks, exact)
    if masks is None:
        removed = zero_units(graph)
    else:
        removed = _removed_from_masks(graph, masks)
    removed = graph.removed_lookup(removed)
    _check_nothing_empty(graph, removed)
    new_model, report = _rebuild_reported(graph, graph.model, removed)
    for path, class_name in report.own_class:
        logging.getLogger(__name__).info(
            "compact: %r (%s) rebuilt as a %s from its config.",
            path, class_name, class_name,
        )
    if graph.traced:
        listed = ", ".join(
            f"{b.path!r} ({b.class_name})" for b in graph.traced
        )
        warnings.warn(
            "compact traced these layers (their `call`) and rebuilt each "
            "as a functional model of its own (smaller) sublayers and ops, "
            f"not as its class: {listed}. The result is a functional "
            "model; see `keras_dynfilt.pruning.trace`.",
            UserWarning,
            stacklevel=2,
        )
    if report.plain:
        listed = "; ".join(
            f"{path!r} ({class_name}): {reason}"
            for path, class_name, reason in report.plain
        )
        warnings.warn(
            "compact rebuilt these model subclasses as plain functional "
            "(or Sequential) models, with the same layers and compacted "
            "weights but not their classes or extra attributes: "
            f"{listed}. To get the class back, give it a config that lists "
            "its layers (a constructor taking `inputs, outputs`) and "
            "register it with `keras.saving.register_keras_serializable`.",
            UserWarning,
            stacklevel=2,
        )
    if data is not None:
        difference = CompactionDifference(
            _outputs(model, data), _outputs(new_model, data),
            _inexact_layers(graph, removed),
        )
        new_model.compaction_difference = difference
        if difference.normalizations:
            warnings.warn(
                "compact(exact=False) removed input channels of "
                f"{len(difference.normalizations)} normalisation layer(s) "
                f"({', '.join(difference.normalizations[:4])}"
                f"{', ...' if len(difference.normalizations) > 4 else ''}): "
                "the compacted model computes another function; on `data` "
                f"its outputs differ by up to {difference.max_abs:.3g} "
                f"({difference.relative:.2%} of the largest output). "
                "Fine-tune it.",
                UserWarning,
                stacklevel=2,
            )
    return new_model
