"""The channel-rule registry: how each layer type treats channels.

The pruning engine reasons about the channel (last) axis of every tensor in
a functional model. Each channel position carries a *slot* (an integer);
positions whose slots get *coupled* must be kept or removed together. A
`ChannelRule` tells the engine, for one layer type:

- `propagate`: which slots the layer's outputs carry, given its inputs'
  slots. A producer (a convolution, a dense layer) creates new *filter*
  slots; a pass-through layer (an activation, pooling) forwards its input's
  slots; a merge couples its inputs' slots position by position;
  a layer it cannot reason about is a *barrier* (`ctx.barrier`).
- `weights`: how each weight's axes follow the slots (which positions to
  slice when compacting, which to zero when masking).
- `compact_config`: the layer's config once some channels are removed.
- `filter_kernel`: for producers, the weight that ranks its filters.

Rules are looked up by the layer's **exact** class: a subclass of `Conv2D`
whose `call` does something else is never guessed to behave like `Conv2D`;
it is a barrier until its author registers a rule with
`register_channel_rule`. This library's own layers register theirs in
`keras_dynfilt.pruning.rules` (MFM, ChannelPadding) and
`keras_dynfilt.pruning.library_layers` (NDDR, CrossStitch, FilterGenerator,
DimensionReduction, WSoftmaxHead).
"""

import collections

import keras
import numpy as np

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

    def propagate(self, ctx, layer, inputs, output_shapes):
        """Returns one slot array per output.

        Args:
            ctx: The analysis context (`new_filters`, `new_zeros`,
                `couple`, `fix`, `barrier`).
            layer: The layer.
            inputs: List of `TensorSlots`, one per input tensor.
            output_shapes: List of the output tensors' static shapes.
        """
        raise NotImplementedError

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
    sublayers repeat a name (two convolutions inside one layer), its path
    below the layer (`"reduce1_conv/kernel"`). Channel rules name weights
    by these keys. Operation nodes (Keras ops applied to tensors) have no
    variables.
    """
    weights = getattr(layer, "weights", None) or []
    counts = collections.Counter(v.name for v in weights)
    found = {}
    for i, v in enumerate(weights):
        key = v.name
        if counts[key] > 1:
            parts = v.path.split("/")
            if layer.name in parts[:-1]:
                key = "/".join(parts[parts.index(layer.name) + 1 :])
            else:
                key = v.path
        if key in found:
            key = f"{key}#{i}"
        found[key] = v
    return found


_RULES = {}


def register_channel_rule(layer_cls, rule):
    """Registers how a layer class treats channels for pruning.

    Args:
        layer_cls: The layer class. Only layers of exactly this class use
            the rule (subclasses must register their own).
        rule: A `ChannelRule` instance.

    Returns:
        `layer_cls`, so the call can be used after a class definition.
    """
    if not isinstance(layer_cls, type):
        raise TypeError(
            "`layer_cls` must be a class. "
            f"Received: layer_cls={layer_cls!r}"
        )
    if not isinstance(rule, ChannelRule):
        raise TypeError(
            "`rule` must be a `ChannelRule` instance. "
            f"Received: rule={rule!r} of type {type(rule).__name__}"
        )
    _RULES[layer_cls] = rule
    return layer_cls


def get_channel_rule(layer):
    """The rule registered for `type(layer)`, or `None` (a barrier)."""
    return _RULES.get(type(layer))
