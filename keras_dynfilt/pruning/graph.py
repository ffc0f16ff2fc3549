"""Graph analysis: which filters of a model must be pruned together.

Every channel position of every tensor carries a slot; the layers' channel
rules (`keras_dynfilt.pruning.rules`) create, forward and couple slots
through the `RuleContext` that `ChannelGraph` implements.
A union-find over the slots gives the *units*: sets of producer filters (and
the channels they flow into) that are removed as one. Units whose set of
producer layers is the same form a `FilterGroup`, the object a pruning
criterion works on.

This module reads the functional graph through Keras's node structures
(`Node.input_tensors`, and the private ones through
`keras_dynfilt._keras_private.graph_nodes`), as Keras's own `clone_model`
does.
"""

import collections
import warnings
import weakref

import keras
import numpy as np

from keras_dynfilt import _keras_private
from keras_dynfilt._keras_private import Functional
from keras_dynfilt._validation import check_bool
from keras_dynfilt.pruning import rules  # noqa: F401 - registers the rules
from keras_dynfilt.pruning.rules.base import (  # noqa: F401 - re-exported
    TensorSlots,
    _variables,
    get_channel_rule,
    held_slots,
)
from keras_dynfilt.pruning.rules.context import RuleContext

Barrier = collections.namedtuple("Barrier", ["layer", "class_name", "reason"])
Barrier.__doc__ = """A layer the engine could not reason about (or that forbids
pruning its inputs): its input channels are left alone."""

HeldFixed = collections.namedtuple("HeldFixed", ["reason", "layers", "filters"])
HeldFixed.__doc__ = """Producer filters that cannot be pruned, and why.

Attributes:
    reason: String, `"layer: why"`: the layer holding the channels fixed
        (a barrier, a consumer of channels that stay non-zero, a model
        output, ...) and the reason.
    layers: Tuple of the producer layers whose filters it holds.
    filters: Integer, how many filters it holds.
"""

_Record = collections.namedtuple(
    "_Record", ["layer", "rule", "in_slots", "out_slots"]
)


def _graph_base(layer):
    """`Functional` or `Sequential` when `layer` is computed by its graph.

    Subclasses count (a `keras.Model` subclass whose `__init__` builds a
    graph and calls `super().__init__(inputs, outputs)`, as model libraries
    write backbones) as long as they keep the base class's `call`: a class
    that overrides `call` computes something the graph does not show.
    """
    if isinstance(layer, keras.Sequential):
        base = keras.Sequential
    elif isinstance(layer, Functional):
        base = Functional
    else:
        return None
    return base if type(layer).call is base.call else None


def is_graph_model(layer):
    """Whether `layer` is a model the engine walks through: a functional or
    Sequential model, or a subclass of one that keeps its `call`."""
    return _graph_base(layer) is not None


def graph_of(model):
    """The `Functional` graph of a functional or built Sequential model."""
    base = _graph_base(model)
    if base is keras.Sequential:
        functional = _keras_private.sequential_graph(model)
        if functional is None:
            raise ValueError(
                "The Sequential model must be built (start it with "
                f"`keras.Input`, or call `build`). Received: model={model.name}"
            )
        return functional
    if base is Functional:
        return model
    kind = type(model).__name__
    if not isinstance(model, keras.Model):
        reason = "it is not a Keras model"
    elif isinstance(model, (Functional, keras.Sequential)):
        reason = (
            f"{kind} builds a graph but overrides `call`, so the graph is "
            "not what the model computes"
        )
    else:
        reason = (
            f"{kind} has no graph to analyse (its `call` is written by "
            "hand, so the layers' connections are unknown)"
        )
    raise TypeError(
        "`model` must be a Keras model with a functional graph: a "
        "functional or Sequential model, or a `keras.Model` subclass whose "
        "`__init__` builds a graph and calls `super().__init__(inputs, "
        f"outputs)` and keeps `Model.call`; {reason}. Build a functional "
        "model from the same layers, e.g. `inputs = keras.Input(shape); "
        "model = keras.Model(inputs, outputs)`. "
        f"Received: model of type {kind}"
    )


def path_name(path):
    return "/".join(path)


class FilterGroup:
    """Filters of one or more producer layers that are pruned together.

    A group has `size` units. Unit `u` is a tuple of `(layer_path, index)`
    filters (one per coupled producer: the convolutions feeding a residual
    add, both halves of an MFM pair, the same filter of every group of a
    grouped convolution, ...). Removing unit `u` removes all of them, plus
    the matching BatchNormalization entries and consumer input channels.

    Attributes:
        name: String, a readable name (the first producer layer's path, with
            the number of coupled layers).
        layers: Tuple of the producer layers' paths (`"outer/inner"` for
            nested models).
        units: Tuple of units, each a tuple of `(layer_path, filter_index)`.
    """

    def __init__(self, graph, name, layers, units, roots):
        self.graph = graph
        self.name = name
        self.layers = tuple(layers)
        self.units = tuple(units)
        self._roots = np.asarray(roots)
        self._zero_targets = None

    @property
    def size(self):
        """Number of units (the `N` a pruning rate applies to)."""
        return len(self.units)

    def __len__(self):
        return self.size

    def __repr__(self):
        return (
            f"<FilterGroup {self.name!r}: {self.size} units over "
            f"{len(self.layers)} layer(s)>"
        )

    def filter_weights(self):
        """The filters of every unit as a NumPy array `(size, D)`.

        Row `u` concatenates, for every filter of unit `u` (in layer order),
        the producer's kernel slice for that filter (flattened; no bias).
        This is what L1/L2/geometric-median criteria rank.
        """
        kernels = {}
        for path in self.layers:
            layer = self.graph.layers[path]
            kernels[path] = get_channel_rule(layer).filter_matrix(layer)
        rows = [
            np.concatenate([kernels[path][i] for path, i in unit])
            for unit in self.units
        ]
        return np.stack(rows).astype("float32")


class FilterGroups(list):
    """The list of `FilterGroup`s of a model, with the analysis report.

    Attributes:
        graph: The `ChannelGraph` the groups come from.
        barriers: List of `Barrier(layer, class_name, reason)`: layers the
            engine treated as barriers.
        traced: List of `TracedBlock(path, class_name)`: the custom layers
            and subclassed models whose `call` was traced into their parts
            (see `keras_dynfilt.pruning.trace`).
    """

    def __init__(self, groups, graph):
        super().__init__(groups)
        self.graph = graph
        self.barriers = graph.barriers
        self.traced = list(getattr(graph, "traced", []))

    def held_fixed(self):
        """The producer filters that cannot be pruned, grouped by reason.

        Returns:
            A list of `HeldFixed(reason, layers, filters)`, most filters
            first.
        """
        graph = self.graph
        held = collections.defaultdict(list)
        for slot, (path, _) in graph._atoms.items():
            reason = graph.fixed.get(int(graph.roots[slot]))
            if reason is not None:
                held[reason].append(path)
        found = [
            HeldFixed(reason, tuple(dict.fromkeys(paths)), len(paths))
            for reason, paths in held.items()
        ]
        return sorted(found, key=lambda h: -h.filters)

    def explain(self, limit=8):
        """Why filters are held fixed, as readable lines (a string)."""
        lines = []
        held = self.held_fixed()
        for h in held[:limit]:
            names = ", ".join(h.layers[:4])
            if len(h.layers) > 4:
                names += f" and {len(h.layers) - 4} more"
            lines.append(f"{h.filters} filters of {names}: held by {h.reason}")
        if len(held) > limit:
            lines.append(f"... and {len(held) - limit} more reasons")
        return "\n".join(lines)

    def prunable_fraction(self):
        """Prunable producer filters / producer filters not feeding a
        model output directly (1.0 when there are none)."""
        graph = self.graph
        total = prunable = 0
        groups = set(int(r) for r in graph.prunable_roots)
        for slot in graph._atoms:
            root = int(graph.roots[slot])
            reason = graph.fixed.get(root, "")
            if reason.endswith("model output"):
                continue
            total += 1
            prunable += root in groups
        return prunable / total if total else 1.0

    def summary(self):
        """A readable table of the groups and barriers (a string)."""
        lines = [f"{'group':<44}{'units':>6}  layers"]
        for g in self:
            lines.append(f"{g.name:<44}{g.size:>6}  {', '.join(g.layers)}")
        for b in self.barriers:
            lines.append(f"barrier: {b.layer} ({b.class_name}): {b.reason}")
        for line in self.explain(limit=20).splitlines():
            lines.append(f"fixed: {line}")
        return "\n".join(lines)


class ChannelGraph(RuleContext):
    """The channel slots of a model and how they are coupled.

    Build it with `analyze(model)`. `groups` are the prunable filter groups,
    `barriers` the layers it could not reason about, `fixed` the reasons
    why coupled channels cannot be pruned (model outputs, barriers, ...).
    While it walks the model it is the `RuleContext` of every rule.
    """

    def __init__(self, model, exact=True):
        self.model = model
        # False: channels feeding a normalisation over channels may be
        # removed (the function changes; `compact` reports by how much).
        self.exact = exact
        self._parent = []
        self._atoms = {}
        self._fixed = {}
        # Slots whose channel may be non-zero once its unit is removed (all
        # its producer filters zeroed): slot -> where that comes from. A
        # consumer that slices its input channels needs them zero
        # (`require_zero`); an elementwise op only passes the value on.
        self._live = {}
        self._nonfinite = set()
        self._notes = collections.defaultdict(dict)  # key -> {slot: value}
        self._tags = {}
        self.node = None
        self.barriers = []
        self.layers = {}
        self.records = {}
        self._path = ()
        self._zero_targets = None  # masking's targets, by group
        self._axis_roots = None  # masking's weights and their roots
        self._graphs = []  # (model, its graph) of every graph model walked
        graph = graph_of(model)
        inputs = [
            self._fixed_slots(tuple(t.shape), "model input")
            for t in graph.inputs
        ]
        outputs = self._walk(model, inputs, ())
        for slots in outputs:
            self.fix(slots, "model output")
        self._finish()

    # -- the context the channel rules use ---------------------------------
    def _new(self, n):
        start = len(self._parent)
        self._parent.extend(range(start, start + n))
        return np.arange(start, start + n)

    def new_filters(self, layer, n):
        """`n` new slots, the filters of the current (producer) layer."""
        slots = self._new(n)
        path = path_name(self._path)
        for i, slot in enumerate(slots):
            self._atoms[int(slot)] = (path, i)
        return slots

    def new_zeros(self, n):
        """`n` new slots for channels that are constant zeros."""
        return self._new(n)

    def is_live(self, slots):
        """Boolean array: whether each channel may be non-zero once its
        unit is removed (`f(0) != 0` on the way, a constant added, ...)."""
        return np.array([int(x) in self._live for x in slots], bool)

    def mark_live(self, slots, reason, finite=True):
        """Marks the new slots of the current layer (its filters) as
        non-zero when removed, for `reason`."""
        where = f"{path_name(self._path)}: {reason}"
        for x in slots:
            self._live.setdefault(int(x), where)
            if not finite:
                self._nonfinite.add(int(x))

    def with_live(self, slots, live, reason="", finite=True):
        """The slots of an elementwise result whose channel `c` is zero
        when removed unless `live[c]`.

        Returns `slots` when nothing changes, else new slots coupled to
        them (the same units) that carry the new flags. A non-finite value
        (an infinite padding) stays non-zero whatever is done to it.
        """
        slots = np.asarray(slots)
        live = np.broadcast_to(np.asarray(live, bool), slots.shape)
        live = live | np.array(
            [int(x) in self._nonfinite for x in slots], bool
        )
        if np.array_equal(live, self.is_live(slots)) and finite:
            return slots
        return self._relive(slots, live, reason, nonfinite=not finite)

    def reset_live(self, slots, live):
        """New slots coupled to `slots`, live only where `live[c]`."""
        return self._relive(np.asarray(slots), live, "live before", None)

    def _relive(self, slots, live, reason, nonfinite):
        """New slots coupled to `slots`, live where `live[c]` (keeping the
        reason recorded for the old slot). `nonfinite`: None drops the
        non-finite flags, True marks every live slot non-finite, False
        carries the old slot's flag."""
        new = self._new(len(slots))
        self.couple(new, slots)
        where = f"{path_name(self._path)}: {reason}"
        for x, old, flag in zip(new, slots, live):
            if not flag:
                continue
            self._live[int(x)] = self._live.get(int(old), where)
            if nonfinite is not None and (
                nonfinite or int(old) in self._nonfinite
            ):
                self._nonfinite.add(int(x))
        return new

    def annotate(self, slots, key, values):
        """Attaches `values[i]` to `slots[i]` under `key`."""
        notes = self._notes[key]
        for x, value in zip(slots, values):
            notes[int(x)] = value

    def annotations(self, slots, key):
        """The values attached to `slots` under `key` (`None`: none)."""
        notes = self._notes.get(key, {})
        return [notes.get(int(x)) for x in slots]

    def separate(self, parts):
        """Keeps the units of each slot array in `parts` in groups of their
        own (the outputs of a channel split: a group may then never lose
        every channel of one output, as long as it keeps one unit)."""
        where = path_name(self._path)
        for k, slots in enumerate(parts):
            for x in slots:
                self._tags.setdefault(int(x), set()).add((where, k))

    def require_zero(self, slots):
        """Fixes the channels that the current layer (a consumer: kernel
        rows, a reduction over channels) would lose but that are not zero
        once removed: its output would change."""
        if slots is None:
            return
        for x in slots:
            origin = self._live.get(int(x))
            if origin is not None:
                self.fix(
                    [x], f"reads channels that stay non-zero when removed "
                    f"({origin})",
                )

    def _fixed_slots(self, shape, reason):
        return held_slots(self, shape, reason)

    def _find(self, x):
        parent = self._parent
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    def couple(self, a, b):
        """Couples slot arrays `a` and `b` position by position."""
        if len(a) != len(b):
            raise ValueError(
                f"Cannot couple {len(a)} channels with {len(b)} channels "
                f"at layer {path_name(self._path)!r}."
            )
        for x, y in zip(a, b):
            rx, ry = self._find(int(x)), self._find(int(y))
            if rx != ry:
                self._parent[max(rx, ry)] = min(rx, ry)

    def fix(self, slots, reason):
        """Marks `slots` (and all coupled to them) as never pruned."""
        if slots is None:
            return
        for x in slots:
            self._fixed.setdefault(int(x), f"{path_name(self._path)}: {reason}")

    def barrier(self, layer, inputs, output_shapes, reason):
        """Leaves the inputs' channels alone; the outputs are fixed."""
        name = path_name(self._path)
        self.barriers.append(Barrier(name, type(layer).__name__, reason))
        for t in inputs:
            self.fix(t.slots, f"input of a barrier ({reason})")
        return [
            self._fixed_slots(tuple(s), f"output of a barrier ({reason})")
            for s in output_shapes
        ]

    # -- the walk ------------------------------------------------------------
    def _walk(self, model, in_slots, prefix):
        graph = graph_of(model)
        self._graphs.append((model, graph))
        values = {}
        for tensor, slots in zip(graph.inputs, in_slots):
            values[id(tensor)] = slots
            if prefix:
                layer = _keras_private.producing_operation(tensor)
                self._record(
                    prefix + (layer.name,), layer, get_channel_rule(layer),
                    [slots], [slots],
                )
        for node in _keras_private.graph_nodes(graph):
            op = node.operation
            path = prefix + (op.name,)
            ins = [values.get(id(t)) for t in node.input_tensors]
            if is_graph_model(op):
                outs = self._walk(op, ins, path)
            else:
                outs = self._call(op, path, node, ins)
            for tensor, slots in zip(node.output_tensors, outs):
                values[id(tensor)] = slots
        return [values.get(id(t)) for t in graph.outputs]

    def _call(self, layer, path, node, ins):
        self._path = path
        self.node = node
        rule = get_channel_rule(layer)
        inputs = [
            TensorSlots(tuple(t.shape), s)
            for t, s in zip(node.input_tensors, ins)
        ]
        out_shapes = [tuple(t.shape) for t in node.output_tensors]
        if rule is None:
            reason = f"no channel rule registered for {type(layer).__name__}"
            refused = _tracing().refusal(layer)
            if refused is not None:
                reason += f"; it was not traced: {refused}"
            if isinstance(layer, (Functional, keras.Sequential)):
                reason = "a model class that overrides `call` (its graph is "
                reason += "not what it computes)"
            outs = self.barrier(layer, inputs, out_shapes, reason)
        elif rule.needs_input_slots and any(s is None for s in ins):
            outs = self.barrier(
                layer, inputs, out_shapes, "an input's channels are unknown"
            )
        else:
            if not rule.elementwise:
                for t in inputs:
                    self.require_zero(t.slots)
            outs = list(rule.propagate(self, layer, inputs, out_shapes))
        for shape, slots in zip(out_shapes, outs):
            if slots is not None and len(slots) != shape[-1]:
                raise RuntimeError(
                    f"The channel rule of {type(layer).__name__} returned "
                    f"{len(slots)} slots for an output of shape {shape}."
                )
        self._record(path, layer, rule, ins, outs)
        return outs

    def _record(self, path, layer, rule, ins, outs):
        name = path_name(path)
        first = self.records.get(name)
        if first is None:
            self.layers[name] = layer
            self.records[name] = _Record(layer, rule, list(ins), list(outs))
            return
        # A shared layer: every call must keep the same channels.
        self._path = path
        for old, new in zip(
            first.in_slots + first.out_slots, list(ins) + list(outs)
        ):
            if old is not None and new is not None and len(old) == len(new):
                self.couple(old, new)

    # -- the result ---------------------------------------------------------
    def _finish(self):
        n = len(self._parent)
        self.roots = np.array([self._find(i) for i in range(n)], np.int64)
        atoms = collections.defaultdict(set)
        for slot, atom in self._atoms.items():
            atoms[int(self.roots[slot])].add(atom)
        tags = collections.defaultdict(set)
        for slot, found in self._tags.items():
            tags[int(self.roots[slot])].update(found)
        self.fixed = {}
        for slot, reason in self._fixed.items():
            self.fixed.setdefault(int(self.roots[slot]), reason)
        order = {path: i for i, path in enumerate(self.records)}

        def atom_key(atom):
            return order[atom[0]], atom[1]

        by_signature = collections.defaultdict(list)
        for root, members in atoms.items():
            if root in self.fixed:
                continue
            if len(members) == 1:  # most units: one filter of one layer
                unit = tuple(members)
                signature = ((unit[0][0], 1),)
            else:
                unit = tuple(sorted(members, key=atom_key))
                # Filters per layer, in layer order (the unit is sorted so).
                count = {}
                for path, _ in unit:
                    count[path] = count.get(path, 0) + 1
                signature = tuple(count.items())
            found = tags.get(root)
            key = (signature, tuple(sorted(found)) if found else ())
            by_signature[key].append((atom_key(unit[0]), unit, root))
        for members in by_signature.values():
            members.sort(key=lambda m: m[0])
        groups = []
        names = collections.Counter()
        for (signature, _), members in sorted(
            by_signature.items(), key=lambda item: item[1][0][0]
        ):
            layers = [path for path, _ in signature]
            name = layers[0]
            if len(layers) > 1:
                name += f" (+{len(layers) - 1} coupled)"
            names[name] += 1
            if names[name] > 1:
                name += f" #{names[name]}"
            groups.append(
                FilterGroup(
                    self, name, layers, [u for _, u, _ in members],
                    [r for _, _, r in members],
                )
            )
        self.groups = groups
        self.prunable_roots = np.sort(
            np.concatenate([g._roots for g in groups] or [[]]).astype(np.int64)
        )
        self._analysed = self._signature()

    def removed_lookup(self, removed_roots):
        """Boolean array over roots, True where the root is removed: index
        it with `roots[slots]` instead of searching the removed roots again
        for every slot array (that search made compaction quadratic)."""
        lookup = np.zeros(len(self.roots), bool)
        lookup[np.asarray(removed_roots, np.int64)] = True
        return lookup

    def keep_of(self, slots, removed):
        """Boolean keep array for a slot array.

        `removed` is the array of removed roots, or better the boolean
        `removed_lookup` of it (built once for many slot arrays).
        """
        if slots is None:
            return None
        removed = np.asarray(removed)
        if removed.dtype != bool or removed.shape != self.roots.shape:
            removed = self.removed_lookup(removed)
        return ~removed[self.roots[np.asarray(slots, np.int64)]]

    def is_current(self):
        """Whether the analysis still describes its model: the same graph
        objects (a Sequential model gets a new one from `add`/`pop`), the
        same rule for every layer (none registered since) and the same
        weight shapes (no layer rebuilt at other widths). A functional
        model's connections never change."""
        return self._signature() == self._analysed

    def _signature(self):
        """What the analysis read besides the graph's connections."""
        return (
            tuple(graph_of(m) is g for m, g in self._graphs),
            tuple(
                (
                    get_channel_rule(r.layer),
                    tuple(
                        tuple(w.shape)
                        for w in getattr(r.layer, "weights", None) or ()
                    ),
                )
                for r in self.records.values()
            ),
        )


# model -> weak reference to its latest ChannelGraph: compact and
# model_cost reuse the analysis behind the groups a caller still holds.
_ANALYSES = weakref.WeakKeyDictionary()


def _tracing():
    from keras_dynfilt.pruning import tracing

    return tracing


def analyze(model, exact=True):
    """Builds the `ChannelGraph` of a model (custom layers and subclassed
    models traced first, see `keras_dynfilt.pruning.trace`); `exact` as in
    `filter_groups`."""
    exact = check_bool(exact, "exact")
    traced, blocks = _tracing()._traced(model)
    graph = ChannelGraph(traced, exact=exact)
    graph.traced = list(blocks)
    try:
        _ANALYSES[model] = weakref.ref(graph)
    except TypeError:  # a model that cannot be weakly referenced or hashed
        pass
    return graph


def cached_analysis(model, graph=None, exact=True):
    """A `ChannelGraph` of `model` without analysing it again if possible.

    `graph` (e.g. the graph of the groups a mask names) when it is an
    analysis of `model` in the same mode (`exact`) that still describes it
    (`is_current`), else the latest analysis of `model` while it is alive
    (a caller holds its groups), current and in that mode, else a new
    analysis.
    """
    if graph is not None and graph.exact == exact and graph.is_current() and (
        graph.model is model or graph.model is _tracing()._traced(model)[0]
    ):
        return graph
    try:
        ref = _ANALYSES.get(model)
    except TypeError:
        ref = None
    graph = None if ref is None else ref()
    if graph is not None and graph.exact == exact and graph.is_current():
        return graph
    return analyze(model, exact)


def filter_groups(model, warn=True, exact=True):
    """Lists the prunable filter groups of a model.

    Walks a functional or Sequential Keras model (nested models included,
    and subclasses of `keras.Model` that build their graph in `__init__`)
    and returns the groups of producer filters (Conv1D/2D/3D, transposed
    and separable convolutions, Dense, Embedding) whose output channels
    must be removed together, with every consumer that must be sliced.
    Coupling comes from elementwise merges (Add, Subtract, Multiply,
    Maximum, Minimum, Average), MFM pairs (`k`, `k + N/2`), grouped
    convolutions and shared layers; BatchNormalization, pass-through layers
    (activations that keep 0 at 0, pooling, dropout, padding, upsampling,
    global pooling), Concatenate (channel offsets), Flatten (a channel
    becomes `H * W` input units of the next Dense) and depthwise
    convolutions follow the channels, and so do Keras ops applied to
    tensors (`x + y`, `x * 2.0`, `keras.ops.pad`, `keras.ops.split`, ...:
    the rules of their layer equivalents). A channel that stays non-zero
    once removed (after an activation with `f(0) != 0`, `x + 3.0`) may
    reach an elementwise consumer (a squeeze-and-excitation `Multiply`
    whose other input is zero, a BatchNormalization that masking zeroes);
    one that a consumer slices away (kernel rows) is held fixed. The
    model's output channels, channels read by a layer without a registered
    channel rule (a *barrier*), and channels whose statistics would change
    (LayerNormalization over channels, softmax over channels) are never
    pruned.

    Args:
        model: A functional or built Sequential `keras.Model`, or a subclass
            whose `__init__` calls `super().__init__(inputs, outputs)`.
        warn: Boolean, whether to warn (`UserWarning`) when the model
            contains barrier layers or when fewer than half of the filters
            that do not feed a model output can be pruned (the warning
            names the layers holding them fixed and why; see
            `FilterGroups.held_fixed`).
        exact: Boolean. True (the default): only channels whose removal
            leaves the function unchanged are prunable. False (the
            *inexact mode*): channels feeding a LayerNormalization or
            RMSNormalization over channels are prunable too, with the
            norm's gamma/beta entries, as Torch-Pruning prunes them; the
            norm's statistics then lose channels, so the compacted model
            differs from the masked one (`compact(model, exact=False,
            data=x)` measures by how much) and fine-tuning is expected.

    Returns:
        A `FilterGroups` list of `FilterGroup`; its `barriers` attribute
        lists the barrier layers and `graph` is the full `ChannelGraph`.

    Examples:
        >>> inputs = keras.Input((8, 8, 3))
        >>> x = keras.layers.Conv2D(8, 3, padding="same", name="a")(inputs)
        >>> y = keras.layers.Conv2D(8, 3, padding="same", name="b")(inputs)
        >>> x = keras.layers.Add()([x, y])
        >>> outputs = keras.layers.Dense(2)(keras.layers.Flatten()(x))
        >>> model = keras.Model(inputs, outputs)
        >>> [(g.name, g.size) for g in
        ...  keras_dynfilt.pruning.filter_groups(model)]
        [('a (+1 coupled)', 8)]
    """
    graph = analyze(model, exact)
    groups = FilterGroups(graph.groups, graph)
    if not warn:
        return groups
    fraction = groups.prunable_fraction()
    message = []
    if graph.barriers:
        listed = "; ".join(
            f"{b.layer} ({b.class_name}: {b.reason})" for b in graph.barriers
        )
        message.append(
            "The pruning engine treats these layers as barriers (their "
            f"input channels are never pruned): {listed}."
        )
    if fraction < 0.5:
        message.append(
            f"Only {100 * fraction:.0f}% of the filters that do not feed a "
            "model output can be pruned. Held fixed:\n" + groups.explain()
        )
    if message:
        warnings.warn(" ".join(message), UserWarning, stacklevel=2)
    return groups
