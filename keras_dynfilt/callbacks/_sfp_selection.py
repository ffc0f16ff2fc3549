"""Which filter groups SoftFilterPruning prunes, and its argument checks."""

import numbers
import warnings

from keras_dynfilt.pruning.criteria import pruned_count
from keras_dynfilt.pruning.graph import filter_groups


def check_rate(value, name="pruning_rate"):
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Real)
        or not 0.0 <= value < 1.0
    ):
        raise ValueError(
            f"`{name}` must be a float in [0, 1) (the fraction of filters "
            f"zeroed). Received: {name}={value!r}"
        )
    return float(value)


def matches(names, path):
    return any(path == n or path.startswith(n + "/") for n in names)


def _check_known(model, graph, names, argument, prunable):
    known = list(graph.layers)
    producers = sorted({p for g in prunable for p in g.layers})
    for name in names:
        if not any(p == name or p.startswith(name + "/") for p in known):
            raise ValueError(
                f"`{argument}` names {name!r}, which is not a layer of "
                f"model {model.name!r}. Prunable layers: {producers}"
            )
        if argument != "exclude" and not any(
            matches([name], p) for p in producers
        ):
            raise ValueError(
                f"`{argument}` names {name!r}, which has no prunable "
                f"filters. Prunable layers: {producers}"
            )


def select_groups(model, layers, exclude, rates, schedule):
    """`[(group, rate or None)]`: the groups the callback prunes."""
    try:
        groups = filter_groups(model, warn=False)
    except TypeError as e:
        raise TypeError(
            f"SoftFilterPruning needs a functional or Sequential model. {e}"
        ) from None
    graph = groups.graph
    if not groups:
        barriers = "; ".join(
            f"{b.layer} ({b.reason})" for b in groups.barriers
        )
        raise ValueError(
            f"SoftFilterPruning found no prunable filters in model "
            f"{model.name!r}: it needs convolutions or dense layers whose "
            "output channels are not model outputs and reach only layers "
            "the pruning engine understands."
            + (f" Barrier layers: {barriers}" if barriers else "")
            + (f" Held fixed:\n{groups.explain()}" if groups.held_fixed()
               else "")
        )
    for names, argument in (
        (layers or (), "layers"),
        (exclude or (), "exclude"),
        (rates if isinstance(rates, dict) else (), "pruning_rate"),
    ):
        _check_known(model, graph, names, argument, groups)
    selected = []
    for group in groups:
        if layers is not None and not any(
            matches(layers, p) for p in group.layers
        ):
            continue
        if exclude and any(
            matches(exclude, p) for p in group.layers
        ):
            continue
        rate = None
        if isinstance(rates, dict):
            named = {
                key: value
                for key, value in rates.items()
                for p in group.layers
                if matches([key], p)
            }
            if len(set(named.values())) > 1:
                raise ValueError(
                    f"`pruning_rate` gives different rates to coupled "
                    f"layers of group {group.name!r} (they share one "
                    f"mask): {named}"
                )
            if not named:
                continue
            rate = next(iter(named.values()))
        selected.append((group, rate))
    if not selected:
        raise ValueError(
            f"SoftFilterPruning has no filter group left to prune in "
            f"model {model.name!r} after `layers`={layers} and "
            f"`exclude`={exclude}. Groups: "
            f"{[g.name for g in groups]}"
        )
    if schedule is None:
        too_small = [
            f"{g.name} ({g.size} units)"
            for g, r in selected
            if pruned_count(g.size, rates if r is None else r) == 0
            and (rates if r is None else r) > 0
        ]
        if too_small:
            warnings.warn(
                "SoftFilterPruning: at the given `pruning_rate` these "
                "groups are too small to lose a filter "
                "(floor(size * rate) == 0), so they are never pruned: "
                + ", ".join(too_small),
                UserWarning,
                stacklevel=3,
            )
    return selected
