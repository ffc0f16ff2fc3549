"""The rule contract and the registry: how each layer type treats channels.

The pruning engine reasons about the channel (last) axis of every tensor in
a functional model. Each channel position carries a *slot* (an integer);
positions whose slots get *coupled* must be kept or removed together. A
`ChannelRule` tells the engine, for one layer type:

- `propagate`: which slots the layer's outputs carry, given its inputs'
  slots, through the `RuleContext` it receives. A producer (a convolution,
  a dense layer) creates new *filter* slots; a pass-through layer (an
  activation, pooling) forwards its input's slots; a merge couples its
  inputs' slots position by position; a layer it cannot reason about is a
  *barrier* (`ctx.barrier`).
- `weights`: how each weight's axes follow the slots (which positions to
  slice when compacting, which to zero when masking).
- `compact_config`: the layer's config once some channels are removed.
- `filter_kernel`: for producers, the weight that ranks its filters.
- `macs`: its cost, the multiply-adds of one call for one sample
  (`keras_dynfilt.pruning.model_cost` reads it).

Rules are looked up by the layer's **exact** class: a subclass of `Conv2D`
whose `call` does something else is never guessed to behave like `Conv2D`;
it is a barrier until its author registers a rule with
`register_channel_rule`. A class is registered once: registering it again
raises unless `replace=True`, and `with register_channel_rule(cls, rule):`
registers it for the block only. The rules shipped live next to this
module: `keras_layers` (Keras layers), `keras_ops` (Keras ops applied to
tensors), `applications` (keras.applications' own layers) and
`library_layers` (this library's layers).
"""

import collections

import keras
import numpy as np

from keras_dynfilt._keras_private import sublayers

WeightAxis = collections.namedtuple("WeightAxis", ["axis", "slots", "zero"])
WeightAxis.__doc__ = """One channel-indexed axis of a weight.

Attributes:
    axis: Integer, the weight's axis.
    slots: Integer array, the slot of every position along `axis`.
    zero: Boolean, whether masking a slot zeroes that position (the
        filter's own parameters: kernel output slice, bias, BN gamma/beta),
        as opposed to only slicing it away on compaction (a consumer's
        input rows, BN moving statistics).
"""

TensorSlots = collections.namedtuple("TensorSlots", ["shape", "slots"])
TensorSlots.__doc__ = """A tensor seen by a rule: its static shape and the
slots of its last axis (`None` when the tensor has no channel axis the
engine can follow)."""


class ChannelRule:
    """How one layer type moves, couples and owns channels.

    Subclass it and register an instance with `register_channel_rule`.
    Every method receives the layer; `in_slots` / `out_slots` are lists
    with one integer slot array per input / output tensor, and `keep_in` /
    `keep_out` the matching boolean arrays (True = channel kept).
    """

    #: Whether `propagate` needs every input's slots; when one is unknown
    #: the engine makes the layer a barrier without calling the rule.
    needs_input_slots = True

    #: Whether the rule itself deals with input channels that stay non-zero
    #: once removed (`f(0) != 0` on the way): an elementwise layer passes
    #: that on, a consumer calls `ctx.require_zero`. When False (a rule
    #: that does neither), the engine fixes such input channels itself.
    elementwise = False

    #: Whether the layer is a producer in the sense of a convolution or a
    #: dense layer: its output channels are filters, each a kernel applied
    #: to the input channels. Cross-task probing (`keras_dynfilt.cross_task`)
    #: probes such layers by default.
    is_producer = False

    #: Whether each output value depends only on the input values at the
    #: same position (an activation, BatchNormalization, MFM): cross-task
    #: probing reads a producer's feature after such layers. Rules whose
    #: answer depends on the layer override `is_pointwise`.
    pointwise = False

    def is_pointwise(self, layer):
        """Whether `layer` maps each position on its own (see `pointwise`)."""
        return self.pointwise

    def propagate(self, ctx, layer, inputs, output_shapes):
        """Returns one slot array per output, then any internal ones.

        A layer may own channels that no tensor carries (attention heads,
        head dimensions): their slot arrays (from `ctx.new_filters`) come
        after the outputs' in the returned list. The engine follows only
        the first `len(output_shapes)` along the graph; `weights`,
        `compact_config` and `compact_weights` see all of them
        (`out_slots`, `keep_out`).

        Args:
            ctx: The `RuleContext`: everything a rule may call (create
                filter or constant-zero slots, couple, fix, give up with a
                barrier, follow channels that stay non-zero once removed,
                read the Keras node being analysed). A rule uses nothing
                else of it.
            layer: The layer (or the operation of a Keras op node).
            inputs: List of `TensorSlots`, one per input tensor.
            output_shapes: List of the output tensors' static shapes.
        """
        raise NotImplementedError

    def macs(self, layer, input_shapes, output_shapes):
        """The multiply-adds of one call for one sample, or `None`.

        Shapes are tuples with the batch axis first; read channel counts
        from them (not from `filters` or `units`), so that the formula also
        prices a compacted layer (`model_cost(..., compacted=True)`).
        `None` (the default) means no formula: `model_cost` counts 0 for a
        layer without weights and reports one with weights as unknown.
        `register_layer_cost` overrides this for one class.
        """
        return None

    def compacted_macs(self, layer, input_shapes, output_shapes, keep_out):
        """`macs` of the layer as `compact` would rebuild it.

        `model_cost(..., compacted=True)` (and with `masks`) calls it with
        the shapes' channel counts already reduced; `keep_out` holds the
        keep masks of every slot array `propagate` returned, internal units
        included. The default is `macs` on those shapes; a rule whose
        internal units (attention heads, head dimensions) change its cost
        overrides it, since no tensor shape shows them.
        """
        return self.macs(layer, input_shapes, output_shapes)

    def weights(self, layer, in_slots, out_slots):
        """Maps weight names to lists of `WeightAxis`."""
        return {}

    def compact_config(self, layer, config, keep_in, keep_out):
        """Returns the layer config with the removed channels gone."""
        return config

    def compact_weights(self, layer, values, keep_in, keep_out):
        """The compacted layer's weights, from the sliced ones.

        `values` maps weight names to NumPy arrays already sliced along
        the axes `weights` names. Returns the mapping (same keys, same
        order) the compacted layer gets; the default returns it as is.
        Override it when compaction changes more than shapes (attention
        with fewer key dimensions folds its logit scale into the query
        projection).
        """
        return values

    def filter_kernel(self, layer):
        """For producers: `(weight_name, output_axis)` ranking the filters."""
        return None

    def filter_matrix(self, layer):
        """For producers: a NumPy array `(filters, D)`, one row per filter.

        Row `i` is what a criterion ranks for the layer's filter `i` (the
        index given to `ctx.new_filters`). The default flattens the weight
        named by `filter_kernel` around its output axis; override it when
        a filter's parameters are not one slice of one weight (filters of
        several kernels, interleaved columns).
        """
        name, axis = self.filter_kernel(layer)
        value = keras.ops.convert_to_numpy(_variables(layer)[name].value)
        return np.moveaxis(value, axis, 0).reshape(value.shape[axis], -1)

    def filter_kernel_positions(self, layer):
        """For producers: where each filter's kernel entries lie.

        Returns a list of `(weight_key, axis, filter_index)`: along `axis`
        of that weight, position `p` belongs to filter `filter_index[p]`.
        A callback that masks kernels only (soft filter pruning) zeroes
        these. The default is the weight named by `filter_kernel`, one
        position per filter.
        """
        name, axis = self.filter_kernel(layer)
        size = _variables(layer)[name].shape[axis]
        return [(name, axis, np.arange(size))]


def _variables(layer):
    """A layer's variables by unique key, in `layer.weights` order.

    The key is the variable's name (`"kernel"`, `"gamma"`), or, when
    sublayers repeat a name (two convolutions inside one layer), the names
    of the sublayers that own it below the layer, then its name
    (`"reduce1_conv/kernel"`). The owners are found by walking the layer's
    sublayers (object identity), not by cutting the variable's path string
    at the layer's name, which picks the wrong place when a sublayer has
    the layer's name (DINOv2's `attention` layer holding a
    `MultiHeadAttention` also named `attention`). Channel rules name
    weights by these keys. Operation nodes (Keras ops applied to tensors)
    have no variables.
    """
    weights = getattr(layer, "weights", None) or []
    counts = collections.Counter(v.name for v in weights)
    owners = None
    found = {}
    for i, v in enumerate(weights):
        key = v.name
        if counts[key] > 1:
            if owners is None:
                owners = _owner_keys(layer)
            key = owners.get(id(v), v.path)
        if key in found:
            key = f"{key}#{i}"
        found[key] = v
    return found


def _owner_keys(layer):
    """`id(variable) -> "sub/subsub/name"` for every variable of `layer`:
    the names of the sublayers owning it below `layer` (the first owner
    found, depth first, where a sublayer is shared)."""
    keys = {}
    seen = set()

    def walk(owner, prefix):
        if id(owner) in seen:
            return
        seen.add(id(owner))
        for sub in sublayers(owner):
            walk(sub, f"{prefix}{sub.name}/")
        for v in getattr(owner, "weights", None) or []:
            # Sublayers' variables are keyed already: these are its own.
            keys.setdefault(id(v), prefix + v.name)

    walk(layer, "")
    return keys


def held_slots(ctx, shape, reason):
    """Fixed new slots for the last axis of an output of `shape` that is
    never pruned (`None` when the tensor has no channel axis or its width
    is unknown)."""
    if len(shape) < 2 or shape[-1] is None:
        return None
    slots = ctx.new_zeros(shape[-1])
    ctx.fix(slots, reason)
    return slots


class _Entry:
    """What is registered for one class: its rule and its cost override."""

    __slots__ = ("rule", "macs")

    def __init__(self, rule=None, macs=None):
        self.rule = rule
        self.macs = macs


_REGISTRY = {}  # exact class -> _Entry


class Registration:
    """One registration (`register_channel_rule`, `register_layer_cost`).

    The registration is in effect as soon as the call returns; used as a
    context manager (`with register_channel_rule(cls, rule): ...`) it is
    undone when the block exits: the class gets back what it had before
    (nothing, or the replaced rule or formula).

    Attributes:
        layer_cls: The registered class.
    """

    def __init__(self, layer_cls, field, previous):
        self.layer_cls = layer_cls
        self._field = field
        self._previous = previous

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.undo()
        return False

    def undo(self):
        """Gives the class back what it had before this registration."""
        entry = _REGISTRY.get(self.layer_cls)
        if entry is None:
            return
        setattr(entry, self._field, self._previous)
        if entry.rule is None and entry.macs is None:
            del _REGISTRY[self.layer_cls]

    def __repr__(self):
        return (
            f"<Registration of {self._field} for {self.layer_cls.__name__}>"
        )


def _check_class(layer_cls):
    if not isinstance(layer_cls, type):
        # A class name string would never match a layer's exact class.
        raise TypeError(
            "`layer_cls` must be a class (not its name). "
            f"Received: layer_cls={layer_cls!r}"
        )


def _register(layer_cls, field, value, replace, what):
    entry = _REGISTRY.setdefault(layer_cls, _Entry())
    previous = getattr(entry, field)
    if previous is not None and not replace:
        raise ValueError(
            f"{layer_cls.__module__}.{layer_cls.__qualname__} already has "
            f"a registered {what}: pass `replace=True` to replace it, or "
            "register it in a `with` block to replace it for that block "
            f"only. Received: layer_cls={layer_cls.__name__}"
        )
    setattr(entry, field, value)
    return Registration(layer_cls, field, previous)


def register_channel_rule(layer_cls, rule, *, replace=False):
    """Registers how a layer class treats channels for pruning.

    Args:
        layer_cls: The layer class. Only layers of exactly this class use
            the rule (subclasses must register their own).
        rule: A `ChannelRule` instance (its `macs` prices the layer).
        replace: Boolean, whether to replace a rule registered before;
            registering a class twice without it raises a `ValueError`.

    Returns:
        A `Registration` (`.layer_cls` is the class). The rule is
        registered at once; used as a context manager,
        `with register_channel_rule(cls, rule): ...` registers it for the
        block only (tests, experiments) and restores the previous state on
        exit. (Earlier versions returned `layer_cls`.)

    Raises:
        ValueError: the class already has a rule and `replace` is False.
    """
    _check_class(layer_cls)
    if not isinstance(rule, ChannelRule):
        raise TypeError(
            "`rule` must be a `ChannelRule` instance. "
            f"Received: rule={rule!r} of type {type(rule).__name__}"
        )
    return _register(layer_cls, "rule", rule, replace, "channel rule")


def register_layer_cost(layer_cls, fn, *, replace=False):
    """Registers the multiply-add formula of a layer class.

    A thin alias: the formula overrides the `macs` of the class's
    `ChannelRule` (for this class only), or prices a class that has no
    channel rule (a barrier to pruning that `model_cost` still counts).

    Args:
        layer_cls: The layer class (exact class match).
        fn: `fn(layer, input_shapes, output_shapes) -> int`, the
            multiply-adds of one call for one sample; shapes are tuples
            with the batch axis first.
        replace: Boolean, whether to replace a formula registered before
            with `register_layer_cost`; registering one twice without it
            raises a `ValueError`.

    Returns:
        A `Registration`; `with register_layer_cost(cls, fn): ...`
        registers the formula for the block only.
    """
    _check_class(layer_cls)
    if not callable(fn):
        raise TypeError(
            "`fn` must be a callable `fn(layer, input_shapes, output_shapes)"
            f" -> int`. Received: fn={fn!r} of type {type(fn).__name__}"
        )
    return _register(layer_cls, "macs", fn, replace, "cost formula")


# "module.QualName" -> a function returning the rule: classes of libraries
# that keras-dynfilt does not import (keras-hub), registered on first sight.
_BY_PATH = {}


def register_by_path(path, make_rule):
    """Registers `make_rule()` for the class at `path` (`"module.Name"`)
    the first time a layer of that class is looked up: rules for another
    library's classes without importing that library."""
    _BY_PATH[path] = make_rule


def _entry(layer):
    cls = type(layer)
    entry = _REGISTRY.get(cls)
    if entry is None and _BY_PATH:
        make = _BY_PATH.get(f"{cls.__module__}.{cls.__qualname__}")
        if make is not None:
            register_channel_rule(cls, make())
            entry = _REGISTRY[cls]
    return entry


def get_channel_rule(layer):
    """The rule registered for `type(layer)`, or `None` (a barrier)."""
    entry = _entry(layer)
    return None if entry is None else entry.rule


def get_layer_cost(layer):
    """The multiply-add formula of `type(layer)`, or `None`.

    Returns `fn(layer, input_shapes, output_shapes)`: the formula given to
    `register_layer_cost` when there is one, else the `macs` of the class's
    channel rule when the rule has a formula.
    """
    entry = _entry(layer)
    if entry is None:
        return None
    if entry.macs is not None:
        return entry.macs
    rule = entry.rule
    if rule is None or type(rule).macs is ChannelRule.macs:
        return None
    return rule.macs
