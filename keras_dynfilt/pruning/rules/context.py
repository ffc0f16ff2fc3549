"""The context a channel rule works through."""


class RuleContext:
    """Everything a `ChannelRule` may use while the engine walks a model.

    `ChannelRule.propagate(ctx, layer, inputs, output_shapes)` receives one
    (the engine's `ChannelGraph` implements it). A rule uses these methods
    and the `node` attribute only, never other state of the context.

    Vocabulary (the glossary in docs/pruning.md has the rest): a *slot*
    is an integer naming one channel position; a slot array (a NumPy
    integer array) gives the slots of a tensor's last axis. *Coupled*
    slots are kept or removed together (one *unit*, named by its *root*
    slot). A channel *stays non-zero when removed* when it may be non-zero
    once its unit is removed (its producer filters zeroed): `relu(0) = 0`
    keeps a removed channel zero, `x + 3.0` or `sigmoid` make it non-zero.
    A consumer that slices its input channels away (kernel rows) needs
    them zero (`require_zero`); an elementwise layer passes the flag on
    (`with_nonzero`). The engine's older word for such a channel is
    *live*: `is_live`, `mark_live`, `with_live` and `reset_live` remain as
    aliases of `stays_nonzero`, `mark_nonzero`, `with_nonzero` and
    `reset_nonzero`.

    Attributes:
        node: The Keras node being analysed: `node.input_tensors`,
            `node.output_tensors`, and for a Keras op applied to tensors
            (`x + 3.0`, `keras.ops.pad`) `node.arguments` (`.args`,
            `.kwargs`: its constant operands; `.fill_in(values)` gives the
            call arguments with the tensors replaced by `values[id(t)]`).
        exact: Boolean, the mode the groups are made in. True (the
            default): a rule holds fixed what it cannot remove without
            changing the function. False (`filter_groups(model,
            exact=False)`): a normalisation over channels lets them go
            (the function changes; `compact` measures it).
    """

    node = None
    exact = True

    # -- creating slots ------------------------------------------------------
    def new_filters(self, layer, n):
        """`n` new slots: the filters `0 .. n - 1` of the current layer (a
        producer). Filter `i` is row `i` of `ChannelRule.filter_matrix`."""
        raise NotImplementedError

    def new_zeros(self, n):
        """`n` new slots for channels that are constant zeros (padding)."""
        raise NotImplementedError

    # -- coupling and fixing ---------------------------------------------------
    def couple(self, a, b):
        """Couples slot arrays `a` and `b` position by position (equal
        lengths; a `ValueError` otherwise)."""
        raise NotImplementedError

    def fix(self, slots, reason):
        """Marks `slots` (and all coupled to them) as never pruned; `reason`
        is shown to the user (`FilterGroups.explain`). `None` is ignored."""
        raise NotImplementedError

    def barrier(self, layer, inputs, output_shapes, reason):
        """Gives up on the layer: its inputs' channels are fixed, its
        outputs get new fixed slots. Returns the output slot arrays, so a
        rule ends with `return ctx.barrier(layer, inputs, output_shapes,
        "why")`."""
        raise NotImplementedError

    def separate(self, parts):
        """Keeps the units of each slot array in `parts` in groups of their
        own (the outputs of a channel split: a group may then never lose
        every channel of one output, as long as it keeps one unit)."""
        raise NotImplementedError

    # -- channels that stay non-zero once removed ----------------------------
    def stays_nonzero(self, slots):
        """Boolean array: whether each channel may be non-zero once its
        unit is removed."""
        return self.is_live(slots)

    def mark_nonzero(self, slots, reason, finite=True):
        """Marks the new slots of the current layer (its filters) as
        staying non-zero when removed, for `reason`; `finite=False` when
        the value is infinite."""
        return self.mark_live(slots, reason, finite)

    def with_nonzero(self, slots, nonzero, reason="", finite=True):
        """The slots of an elementwise result whose channel `c` is zero when
        removed unless `nonzero[c]` (or its input was non-finite).

        Returns `slots` when nothing changes, else new slots coupled to
        them (the same units) that carry the new flags.
        """
        return self.with_live(slots, nonzero, reason, finite)

    def reset_nonzero(self, slots, nonzero):
        """New slots coupled to `slots` whose channel `c` stays non-zero
        when removed only where `nonzero[c]` (keeping the reason recorded
        for `slots`), finite: for a layer that removes what made channels
        non-zero or non-finite (a max pooling that never reads a `-inf`
        padding alone)."""
        return self.reset_live(slots, nonzero)

    def require_zero(self, slots):
        """Fixes the channels among `slots` that stay non-zero when
        removed: the current layer (a consumer: kernel rows, a reduction
        over channels) would lose them, but they are not zero once
        removed. `None` is ignored."""
        raise NotImplementedError

    # -- notes rules leave for later rules -----------------------------------
    def annotate(self, slots, key, values):
        """Attaches `values[i]` to `slots[i]` under `key`, for a later rule
        to read (`keras.ops.pad` with `-inf` records its spatial padding for
        the max pooling after it)."""
        raise NotImplementedError

    def annotations(self, slots, key):
        """The values attached to each of `slots` under `key` (`None` where
        there is none), as a list."""
        raise NotImplementedError

    # -- the older names (aliases; the engine implements these) --------------
    def is_live(self, slots):
        """Alias of `stays_nonzero` ("live": non-zero once removed)."""
        raise NotImplementedError

    def mark_live(self, slots, reason, finite=True):
        """Alias of `mark_nonzero`."""
        raise NotImplementedError

    def with_live(self, slots, live, reason="", finite=True):
        """Alias of `with_nonzero`."""
        raise NotImplementedError

    def reset_live(self, slots, live):
        """Alias of `reset_nonzero`."""
        raise NotImplementedError
