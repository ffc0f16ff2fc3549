"""What a `keras_dynfilt.pruning.prune` call did, in numbers."""

import collections

GroupChange = collections.namedtuple(
    "GroupChange",
    [
        "name", "layers", "before", "after", "macs_before", "macs_after",
        "params_before", "params_after",
    ],
    defaults=(None, None, None, None),
)
GroupChange.__doc__ = """One filter group before and after pruning.

Attributes:
    name: String, the group's name in the original model.
    layers: Tuple of its producer layers' paths.
    before: Integer, units in the original model.
    after: Integer, units kept.
    macs_before, macs_after: Integers, the multiply-adds per sample of the
        group's producer layers (`layers`) in the original and the pruned
        model, from `model_cost` of each (a producer's MACs also shrink
        with the groups feeding its input channels). A layer producing
        several groups counts in the first only, so the groups' figures
        add up, with the other layers' (normalisation, heads, ...), to
        the model's totals. `None` if unknown.
    params_before, params_after: Integers, their parameters, likewise.
"""


class PruningReport:
    """The result of `prune` / `Pruner`: groups, costs, target and reach.

    Attributes:
        criterion: The criterion's name (or the callable's `__name__`).
        scope: `"local"` or `"global"`.
        groups: List of `GroupChange(name, layers, before, after,
            macs_before, macs_after, params_before, params_after)`, one per
            group of the original model (excluded groups included, with
            `before == after`).
        macs_before, macs_after: Integers, multiply-adds per sample of the
            original and the pruned model (`model_cost`).
        params_before, params_after: Integers, parameter counts.
        target: Dict `{"kind": "ratio" | "macs" | "params", "requested":
            the argument as given, "value": the absolute target (a ratio
            for "ratio")}`.
        reached: What was reached, in the unit of `target["value"]`: the
            pruned model's MACs or parameters (at most the target, within
            1% of it unless the units are too coarse, which warns), or for
            a ratio the fraction of the selected groups' units removed.
        steps: List of dicts, one per step: `{"step", "macs", "params",
            "target"}` (the step's absolute target, `None` for ratios).
        seconds: Float, wall time of the pruning (fine-tuning excluded).
    """

    def __init__(
        self,
        criterion,
        scope,
        groups,
        macs_before,
        macs_after,
        params_before,
        params_after,
        target,
        reached,
        steps,
        seconds,
    ):
        self.criterion = criterion
        self.scope = scope
        self.groups = list(groups)
        self.macs_before = int(macs_before)
        self.macs_after = int(macs_after)
        self.params_before = int(params_before)
        self.params_after = int(params_after)
        self.target = dict(target)
        self.reached = reached
        self.steps = list(steps)
        self.seconds = float(seconds)

    @property
    def macs_fraction(self):
        """MACs after over MACs before."""
        return self.macs_after / max(self.macs_before, 1)

    @property
    def params_fraction(self):
        """Parameters after over parameters before."""
        return self.params_after / max(self.params_before, 1)

    def as_dict(self):
        """The report as plain JSON-serialisable values."""
        return {
            "criterion": self.criterion,
            "scope": self.scope,
            "target": self.target,
            "reached": self.reached,
            "macs_before": self.macs_before,
            "macs_after": self.macs_after,
            "params_before": self.params_before,
            "params_after": self.params_after,
            "macs_fraction": self.macs_fraction,
            "params_fraction": self.params_fraction,
            "groups": [g._asdict() | {"layers": list(g.layers)}
                       for g in self.groups],
            "steps": self.steps,
            "seconds": self.seconds,
        }

    def table(self):
        """Per-group before/after and the totals, as a string."""
        def count(value):
            return "?" if value is None else f"{value:,}"

        rows = [(
            "group", "before", "after", "removed", "MACs before",
            "MACs after", "params before", "params after",
        )]
        for g in self.groups:
            rows.append((
                g.name, str(g.before), str(g.after), str(g.before - g.after),
                count(g.macs_before), count(g.macs_after),
                count(g.params_before), count(g.params_after),
            ))
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        lines = [
            "  ".join(
                c.ljust(w) if j == 0 else c.rjust(w)
                for j, (c, w) in enumerate(zip(row, widths))
            )
            for row in rows
        ]
        lines.insert(1, "  ".join("-" * w for w in widths))
        target = self.target
        if target["kind"] == "ratio":
            wanted = f"ratio {target['requested']}"
        else:
            wanted = f"{target['kind']} <= {target['value']:,}"
        lines += [
            f"criterion {self.criterion!r}, scope {self.scope!r}, "
            f"{len(self.steps)} step(s), {self.seconds:.2f} s",
            f"MACs   {self.macs_before:,} -> {self.macs_after:,} "
            f"({100 * self.macs_fraction:.1f}%)",
            f"params {self.params_before:,} -> {self.params_after:,} "
            f"({100 * self.params_fraction:.1f}%)",
            f"target {wanted}; reached {self.reached:,.4g}",
        ]
        return "\n".join(lines)

    def __str__(self):
        return self.table()

    def __repr__(self):
        return (
            f"<PruningReport {self.criterion!r} {self.scope}: MACs "
            f"{100 * self.macs_fraction:.1f}%, params "
            f"{100 * self.params_fraction:.1f}%>"
        )
