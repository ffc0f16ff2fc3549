"""One-call structured pruning of a trained model: `prune` and `Pruner`."""

import math
import numbers
import time
import warnings

import keras
import numpy as np

from keras_dynfilt._validation import (
    check_bool,
    check_layer_names,
    check_positive_int,
)
from keras_dynfilt.pruning import criteria as C
from keras_dynfilt.pruning.compaction import compact
from keras_dynfilt.pruning.cost import _MaskPricer, model_cost
from keras_dynfilt.pruning.graph import filter_groups
from keras_dynfilt.pruning.masking import apply_group_masks
from keras_dynfilt.pruning.pruning_report import GroupChange, PruningReport

#: How close to a MACs / params target the search must land (relative).
TOLERANCE = 0.01


def _matches(names, path):
    return any(path == n or path.startswith(n + "/") for n in names)


def _check_target(value, name):
    if value is None:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Real)
        or not math.isfinite(value)
        or value <= 0
    ):
        raise ValueError(
            f"`{name}` must be a fraction of the full model in (0, 1] or an "
            f"absolute count > 1. Received: {name}={value!r}"
        )
    return value


def _key(group):
    return group.name


def _price(model, masks, input_shape=None):
    """`(macs, params)` of the model the masks leave, without compacting."""
    cost = model_cost(model, input_shape, masks=masks, warn=False)
    return cost.macs, cost.params


def _layer_costs(cost):
    """`{layer path: (macs, params)}` of a `ModelCost`, every call of a
    shared layer summed (`macs` None where a layer has no formula)."""
    table = {}
    for c in cost.layers:
        macs, params = table.get(c.name, (0, 0))
        macs = None if macs is None or c.macs is None else macs + c.macs
        table[c.name] = (macs, params + c.params)
    return table


def _sum_of(layers, table, index):
    values = [table[p][index] for p in layers if p in table]
    if len(values) < len(layers) or any(v is None for v in values):
        return None
    return int(sum(values))


class Pruner:
    """Prunes a trained model to a ratio or a MACs / params target.

    The step-wise form of `keras_dynfilt.pruning.prune`: `step()` runs one
    pruning step (rank, mask, compact, then `finetune` unless it was the
    last) and returns the current model; `run()` runs the remaining steps
    and returns `(model, report)`. Every step ranks the units of every
    selected filter group (`keras_dynfilt.pruning.filter_groups`) with
    `criterion`, zeroes the removed ones in the current model
    (`apply_group_masks`) and builds the physically smaller model from it
    (`compact`), which computes the same function as the masked one. The
    model passed in is left masked (its removed units zeroed).

    How many units go:
    - `ratio`: the fraction of each group's units (`scope="local"`,
      `floor(size * ratio)`), or of all the selected groups' units ranked
      together (`scope="global"`);
    - `target_macs` / `target_params`: the least pruning whose multiply-adds
      (parameters) are at most the target, found by bisection over one
      ratio for every group (local) or over the global ranking (global),
      each candidate priced without building it (the step walks the
      model once and re-prices only the layers the groups reach, with
      `model_cost`'s formulas; the chosen candidate is checked with
      `model_cost(model, masks=...)`). A fraction in (0, 1] is relative
      to the original model, a larger number is absolute. The result is
      within 1% of the target unless the units are too coarse for that
      (a `UserWarning` says so); the report gives what was reached.

    With `scope="global"` the scores of each group are normalised (see
    `criteria.normalize`), so units compete across groups; `max_ratio`
    caps the fraction removed from any group (at least one unit, or
    `round_to` units, always stays). With `steps=N`, step `k` prunes to
    `k / N` of the way (ratio, or from the full cost to the target) and
    `finetune` trains the compacted model between steps.

    Args:
        model: A trained functional or Sequential `keras.Model` (or a
            subclass that builds its graph in `__init__`).
        ratio: Float in [0, 1), the fraction of units removed. Give either
            it or one target.
        target_macs: The MACs to reach: a fraction of the model's in (0, 1]
            or an absolute count.
        target_params: The parameters to reach, likewise.
        criterion: A name of `keras_dynfilt.pruning.criteria.NAMES`
            (`"l1"`, `"l2"`, `"fpgm"`, `"random"`, `"bn_scale"`,
            `"taylor"`, `"lamp"`) or a callable mapping the `(size, D)`
            filter matrix of a group to `size` scores.
        data: For data-driven criteria (`"taylor"`): a tuple `(x, y)` of
            arrays or an iterable of `(x, y)` batches; the model must be
            compiled with a loss.
        scope: `"local"` (every group pruned at the same ratio) or
            `"global"` (units of all groups ranked together).
        max_ratio: Float in (0, 1], the most any group loses.
        ratios: Optional dict `{layer_name: ratio}`: the groups containing
            a named layer are pruned at that ratio (also under a target,
            which the other groups then meet).
        exclude: Optional list of layer names whose groups are never
            pruned.
        round_to: Optional integer: every pruned group keeps a multiple of
            it (Torch-Pruning's `round_to`: hardware likes channel counts
            that are multiples of 8 or 16). Groups smaller than it must be
            excluded.
        steps: Integer >= 1, the number of pruning steps.
        finetune: Optional, run between steps on the compacted model: a
            callable `finetune(model)` (it may return a new model), or a
            dict of `model.fit` keyword arguments (the compacted model is
            compiled like the original first).
        batch_size: Integer, the batch size for array `data`.
        batches: Integer, how many batches of `data` the gradients of
            `"taylor"` average over.
        seed: Integer, the seed of the `"random"` criterion.
        input_shape: Optional input shape for pricing models whose input
            size is not fixed (see `model_cost`).
        verbose: Integer, 1 prints a line per step.
        exact: Boolean. False: the inexact mode of `filter_groups` (channels
            feeding a LayerNormalization / RMSNormalization over channels
            are prunable too; the function changes). `data` is then
            required: each step's `compact` measures the output difference
            on its first batch (`history` entries get `difference`, the
            `CompactionDifference.as_dict()`).

    Examples:
        >>> model = keras.Sequential([
        ...     keras.Input((8, 8, 3)),
        ...     keras.layers.Conv2D(16, 3, name="conv"),
        ...     keras.layers.GlobalAveragePooling2D(),
        ...     keras.layers.Dense(10)])
        >>> pruner = keras_dynfilt.pruning.Pruner(model, ratio=0.5, steps=2)
        >>> smaller = pruner.step()
        >>> smaller.get_layer("conv").filters
        12
        >>> small, report = pruner.run()
        >>> small.get_layer("conv").filters
        8
    """

    def __init__(
        self,
        model,
        ratio=None,
        target_macs=None,
        target_params=None,
        criterion="l2",
        data=None,
        scope="local",
        max_ratio=1.0,
        ratios=None,
        exclude=None,
        round_to=None,
        steps=1,
        finetune=None,
        batch_size=32,
        batches=4,
        seed=0,
        input_shape=None,
        verbose=0,
        exact=True,
    ):
        if not isinstance(model, keras.Model):
            raise TypeError(
                "`model` must be a keras.Model. Received: model of type "
                f"{type(model).__name__}"
            )
        given = [
            name
            for name, value in (
                ("ratio", ratio),
                ("target_macs", target_macs),
                ("target_params", target_params),
            )
            if value is not None
        ]
        if len(given) != 1:
            raise ValueError(
                "Pass exactly one of `ratio`, `target_macs` and "
                f"`target_params`. Received: {given or 'none of them'}"
            )
        self.ratio = None if ratio is None else C.check_rate(ratio, "ratio")
        self.target_macs = _check_target(target_macs, "target_macs")
        self.target_params = _check_target(target_params, "target_params")
        self.criterion = C.check_criterion(criterion)
        if self.criterion in C.NEEDS_DATA and data is None:
            raise ValueError(
                f"criterion={self.criterion!r} ranks units from data: pass "
                "`data` (a tuple `(x, y)` or an iterable of `(x, y)` "
                "batches)."
            )
        self.data = data
        if scope not in ("local", "global"):
            raise ValueError(
                "`scope` must be 'local' or 'global'. "
                f"Received: scope={scope!r}"
            )
        self.scope = scope
        if (
            isinstance(max_ratio, bool)
            or not isinstance(max_ratio, numbers.Real)
            or not 0.0 < max_ratio <= 1.0
        ):
            raise ValueError(
                "`max_ratio` must be a float in (0, 1]. "
                f"Received: max_ratio={max_ratio!r}"
            )
        self.max_ratio = float(max_ratio)
        if ratios is not None and not isinstance(ratios, dict):
            raise TypeError(
                "`ratios` must be a dict mapping layer names to ratios. "
                f"Received: ratios={ratios!r}"
            )
        self.ratios = {}
        for key, value in (ratios or {}).items():
            if not isinstance(key, str):
                raise TypeError(
                    "`ratios` keys must be layer names. Received: key "
                    f"{key!r} of type {type(key).__name__}"
                )
            self.ratios[key] = C.check_rate(value, f"ratios[{key!r}]")
        self.exclude = check_layer_names(exclude, "exclude") or ()
        self.round_to = (
            None if round_to is None
            else check_positive_int(round_to, "round_to")
        )
        self.steps = check_positive_int(steps, "steps")
        if finetune is not None and not (
            callable(finetune) or isinstance(finetune, dict)
        ):
            raise TypeError(
                "`finetune` must be a callable `finetune(model)` or a dict "
                f"of `fit` keyword arguments. Received: finetune={finetune!r}"
            )
        self.finetune = finetune
        self.batch_size = check_positive_int(batch_size, "batch_size")
        self.batches = check_positive_int(batches, "batches")
        self.seed = seed
        self.input_shape = input_shape
        self.verbose = verbose
        self.exact = check_bool(exact, "exact")
        if not self.exact and data is None:
            raise ValueError(
                "`data` is required when `exact=False`: each step measures "
                "how much the inexact mode changed the outputs. "
                "Received: data=None"
            )

        self.original = model
        self.model = model
        self._compile_config = (
            model.get_compile_config() if getattr(model, "compiled", False)
            else None
        )
        start = time.perf_counter()
        full = model_cost(model, input_shape, warn=False)
        if not full.complete and (target_macs is not None):
            raise ValueError(
                "`target_macs` needs the cost of every layer: "
                + full._unknown_text()
            )
        self.macs_before, self.params_before = full.macs, full.params
        self._layers_before = _layer_costs(full)
        self._layers_after = self._layers_before
        groups = self._groups(model)
        self._plan = self._select(groups)
        self._target = self._absolute_target()
        self._step = 0
        self._pricer = None
        self._orders = None
        self._history = []
        self._seconds = time.perf_counter() - start

    # -- set-up ---------------------------------------------------------------
    def _groups(self, model):
        try:
            return filter_groups(model, warn=False, exact=self.exact)
        except TypeError as e:
            raise TypeError(f"prune needs a model with a graph. {e}") from None

    def _select(self, groups):
        """`{key: dict(size, rate or None, cap, name, layers)}` per group."""
        graph = groups.graph
        producers = sorted({p for g in groups for p in g.layers})
        for name in self.exclude:
            if not any(_matches([name], p) for p in graph.layers):
                raise ValueError(
                    f"`exclude` names {name!r}, which is not a layer of "
                    f"model {self.model.name!r}. Prunable layers: {producers}"
                )
        for name in self.ratios:
            if not any(_matches([name], p) for p in producers):
                raise ValueError(
                    f"`ratios` names {name!r}, which is not a prunable layer "
                    f"of model {self.model.name!r}. Prunable layers: "
                    f"{producers}"
                )
        if not groups:
            raise ValueError(
                f"Model {self.model.name!r} has no prunable filter group."
                + (f" Held fixed:\n{groups.explain()}"
                   if groups.held_fixed() else "")
            )
        plan = {}
        for group in groups:
            entry = {
                "name": group.name,
                "layers": group.layers,
                "size": group.size,
                "rate": None,
                "pruned": 0,
                "excluded": any(
                    _matches(self.exclude, p) for p in group.layers
                ),
            }
            named = {
                k: v for k, v in self.ratios.items()
                for p in group.layers if _matches([k], p)
            }
            if len(set(named.values())) > 1:
                raise ValueError(
                    "`ratios` gives different ratios to coupled layers of "
                    f"group {group.name!r} (they share one mask): {named}"
                )
            if named and not entry["excluded"]:
                entry["rate"] = next(iter(named.values()))
            if self.round_to and not entry["excluded"] and (
                self.round_to > group.size
            ):
                raise ValueError(
                    f"`round_to`={self.round_to} is larger than group "
                    f"{group.name!r} ({group.size} units): it could keep no "
                    "multiple of it. Exclude the group "
                    f"(`exclude=[{group.layers[0]!r}]`) or lower `round_to`. "
                    f"Received: round_to={self.round_to}"
                )
            cap = min(
                group.size - (self.round_to or 1),
                int(math.floor(group.size * self.max_ratio + 1e-9)),
            )
            entry["cap"] = max(cap, 0)
            plan[_key(group)] = entry
        if all(e["excluded"] for e in plan.values()):
            raise ValueError(
                f"`exclude`={list(self.exclude)} leaves no filter group to "
                f"prune. Groups: {[e['name'] for e in plan.values()]}"
            )
        return plan

    def _absolute_target(self):
        for kind, value, full in (
            ("macs", self.target_macs, self.macs_before),
            ("params", self.target_params, self.params_before),
        ):
            if value is not None:
                absolute = value * full if value <= 1 else value
                return {"kind": kind, "requested": value,
                        "value": int(round(absolute)), "full": full}
        return {"kind": "ratio", "requested": self.ratio,
                "value": self.ratio}

    # -- counting -------------------------------------------------------------
    def _count(self, entry, rate):
        """Units of the ORIGINAL group removed at `rate` (at least those
        removed by earlier steps)."""
        if entry["excluded"]:
            return 0
        n = min(C.pruned_count(entry["size"], rate), entry["cap"])
        n = C.round_kept(entry["size"], n, self.round_to)
        return max(n, entry["pruned"])

    def _free(self, entry):
        return not entry["excluded"] and entry["rate"] is None

    def _fixed_count(self, entry, fraction):
        if entry["excluded"]:
            return 0
        return self._count(entry, entry["rate"] * fraction)

    def _local_counts(self, rate, fraction):
        """Counts at `rate` for the free groups (`ratios` at `fraction`)."""
        return {
            key: self._count(entry, rate) if self._free(entry)
            else self._fixed_count(entry, fraction)
            for key, entry in self._plan.items()
        }

    def _global_order(self, groups, scores):
        """Units of the free groups, lowest normalised score first."""
        normalized = C.normalize(scores, self.criterion)
        units = []
        for group, s in zip(groups, normalized):
            entry = self._plan.get(_key(group))
            if entry is None or not self._free(entry):
                continue
            room = entry["cap"] - entry["pruned"]
            order = np.argsort(s, kind="stable")[: max(room, 0)]
            units.extend((float(s[i]), _key(group)) for i in order)
        units.sort(key=lambda u: u[0])
        return [key for _, key in units]

    def _global_counts(self, order, k, fraction):
        """Counts removing the first `k` units of the global `order`."""
        counts = {key: e["pruned"] for key, e in self._plan.items()}
        for key in order[:k]:
            counts[key] += 1
        for key, entry in self._plan.items():
            if not self._free(entry):
                counts[key] = self._fixed_count(entry, fraction)
            else:
                counts[key] = max(
                    C.round_kept(entry["size"], counts[key], self.round_to),
                    entry["pruned"],
                )
        return counts

    # -- one step -------------------------------------------------------------
    def _masks(self, groups, scores, counts):
        """Keep masks of the CURRENT groups for the total counts."""
        return {
            group: C.lowest(s, self._now(group, counts))
            for group, s in zip(groups, scores)
        }

    def _price(self, groups, scores, counts):
        """The target's measure (MACs or params) of the model `counts`
        leave: the step's `_MaskPricer` (the model walked once, each
        candidate priced from the kept channel counts), or `model_cost(
        masks=...)` where the pricer disagreed with it."""
        index = 0 if self._target["kind"] == "macs" else 1
        if self._pricer is None:
            return _price(
                self.model, self._masks(groups, scores, counts),
                self.input_shape,
            )[index]
        removed = [
            group._roots[order[: self._now(group, counts)]]
            for group, order in zip(groups, self._orders)
        ]
        lookup = self._pricer.removed(
            np.concatenate(removed) if removed else np.zeros(0, np.int64)
        )
        return self._pricer.price(lookup)[index]

    def _now(self, group, counts):
        """Units of the CURRENT group removed for the total counts."""
        entry = self._plan[_key(group)]
        now = max(counts[_key(group)] - entry["pruned"], 0)
        return min(now, group.size - 1)

    def _search(self, family, size, target, groups, scores):
        """Smallest family parameter in [0, size] whose cost <= target."""
        cache = {}

        def cost(i):
            counts = family(i)
            key = tuple(sorted(counts.items()))
            if key not in cache:
                cache[key] = self._price(groups, scores, counts)
            return cache[key]

        if cost(size) > target:
            return None, cost(size)
        lo, hi = 0, size  # cost(hi) <= target
        if cost(lo) <= target:
            return lo, cost(lo)
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if cost(mid) <= target:
                hi = mid
            else:
                lo = mid
        return hi, cost(hi)

    def _unreachable(self, target, best):
        kind = self._target["kind"]
        raise ValueError(
            f"`target_{kind}`={self._target['requested']!r} "
            f"({target:,} {kind}) cannot be reached: removing the most "
            f"`max_ratio`={self.max_ratio} allows from every selected group "
            f"leaves {best:,} {kind} of {self._target['full']:,}. Raise "
            "`max_ratio`, prune fewer layers away with `exclude` / "
            "`ratios`, or ask for less."
        )

    def _plan_step(self, groups, scores, fraction):
        """Total counts per group for this step."""
        target = self._target
        if target["kind"] == "ratio":
            if self.scope == "local":
                return self._local_counts(self.ratio * fraction, fraction)
            order = self._global_order(groups, scores)
            total = sum(
                e["size"] for e in self._plan.values() if self._free(e)
            )
            already = sum(
                e["pruned"] for e in self._plan.values() if self._free(e)
            )
            k = C.pruned_count(total, self.ratio * fraction) - already
            return self._global_counts(order, max(k, 0), fraction)
        full = target["full"]
        step_target = int(round(full - (full - target["value"]) * fraction))
        if self.scope == "local":
            rates = sorted({
                j / e["size"]
                for e in self._plan.values() if self._free(e)
                for j in range(e["cap"] + 1)
            } | {0.0})

            def family(i):
                return self._local_counts(rates[i], fraction)

            size = len(rates) - 1
        else:
            order = self._global_order(groups, scores)

            def family(i):
                return self._global_counts(order, i, fraction)

            size = len(order)
        i, reached = self._search(family, size, step_target, groups, scores)
        if i is None:
            self._unreachable(step_target, reached)
        if self.scope == "local" and i > 0:
            # One rate step may move several groups at once (coarse);
            # advance them one at a time, the largest first, to land
            # within a unit of the target: the ratios still differ by at
            # most one rate step.
            low, high = family(i - 1), family(i)
            moved = sorted(
                (k for k in high if high[k] != low[k]),
                key=lambda k: (-self._plan[k]["size"], k),
            )

            def family(j, low=low, high=high, moved=moved):
                return {**low, **{k: high[k] for k in moved[:j]}}

            j, _ = self._search(
                family, len(moved), step_target, groups, scores
            )
            return self._fill(family(j), step_target, groups, scores)
        counts = family(i)
        if i > 0:
            counts = self._skip_coarse(
                order, i, reached, step_target, fraction, groups, scores
            )
        return self._fill(counts, step_target, groups, scores)

    def _skip_coarse(self, order, i, cost, target, fraction, groups, scores):
        """Global ranking: steps over blocks that overshoot the target.

        Removing the `i`-th unit of the ranking brought the cost under the
        target; when that unit completes a coarse block (`round_to`
        channels of a wide layer) it may land far below. Freeze that
        group where it was and go on down the ranking with the others,
        keeping the closest cost under the target.
        """
        best, best_cost = self._global_counts(order, i, fraction), cost
        sequence, before, frozen = list(order), i - 1, set()
        while best_cost < target * (1 - TOLERANCE / 2) and before >= 0:
            frozen.add(sequence[before])
            sequence = sequence[:before] + [
                key for key in sequence[before:] if key not in frozen
            ]

            def family(j, sequence=sequence, before=before):
                return self._global_counts(sequence, before + j, fraction)

            j, cost = self._search(
                family, len(sequence) - before, target, groups, scores
            )
            if j is None or j == 0:
                break
            if cost > best_cost:
                best, best_cost = family(j), cost
            before += j - 1
        return best

    def _fill(self, counts, target, groups, scores):
        """Gives units back while the cost stays within the target.

        The search stops at the first candidate under the target; with
        coarse units (`round_to`) the next one may overshoot by several
        percent. Restoring one block (`round_to` units, or one) of a group
        at a time, the most important removed unit first, brings the cost
        up to the target from below.
        """
        block = self.round_to or 1
        normalized = dict(zip(
            (_key(g) for g in groups), C.normalize(scores, self.criterion)
        ))

        def price(counts):
            return self._price(groups, scores, counts)

        if price(counts) >= target * (1 - TOLERANCE / 2):
            return counts  # close enough: spare the pricing of every group
        while True:
            candidates = []
            for key, entry in self._plan.items():
                now = counts[key] - entry["pruned"]
                if not self._free(entry) or now < block:
                    continue
                restored = np.sort(normalized[key])[now - 1]
                candidates.append((-restored, key))
            for _, key in sorted(candidates):
                trial = {**counts, key: counts[key] - block}
                if price(trial) <= target:
                    counts = trial
                    break
            else:
                return counts

    def _plan_counts(self, groups, scores, fraction):
        """`_plan_step` priced by a `_MaskPricer`, checked once against
        `model_cost(masks=...)`; on a disagreement (a layer whose cost
        the pricer cannot follow) the plan is searched again with
        `model_cost` pricing every candidate."""
        self._pricer = None
        if self._target["kind"] == "ratio" or not groups:
            return self._plan_step(groups, scores, fraction)
        self._pricer = _MaskPricer(groups[0].graph, self.input_shape)
        self._orders = [np.argsort(s, kind="stable") for s in scores]
        counts = self._plan_step(groups, scores, fraction)
        fast = self._price(groups, scores, counts)
        self._pricer = None
        if fast == self._price(groups, scores, counts):
            return counts
        warnings.warn(
            "prune: the fast pricing of masks disagreed with `model_cost`; "
            "searching again with `model_cost` (slower). Please report "
            "this model.",
            UserWarning,
            stacklevel=3,
        )
        return self._plan_step(groups, scores, fraction)

    def _finetune(self, model):
        finetune = self.finetune
        if finetune is None:
            return model
        if isinstance(finetune, dict):
            if self._compile_config is None:
                raise ValueError(
                    "`finetune` as `fit` keyword arguments needs a compiled "
                    "model (the compacted model is compiled like it)."
                )
            model.fit(**finetune)
            return model
        result = finetune(model)
        return result if isinstance(result, keras.Model) else model

    def _compile(self, model):
        if self._compile_config is not None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                model.compile_from_config(self._compile_config)
        return model

    def step(self):
        """Runs the next pruning step; returns the current (smaller) model.

        Fine-tunes the result with `finetune` unless it is the last step.
        """
        if self._step >= self.steps:
            raise ValueError(
                f"All {self.steps} step(s) have run; `run()` or `report` "
                "give the result."
            )
        start = time.perf_counter()
        self._step += 1
        fraction = self._step / self.steps
        groups = [
            g for g in self._groups(self.model)
            if _key(g) in self._plan and not self._plan[_key(g)]["excluded"]
        ]
        scores = C.score_groups(
            groups, self.criterion, data=self.data,
            batch_size=self.batch_size, batches=self.batches, seed=self.seed,
        )
        counts = self._plan_counts(groups, scores, fraction)
        masks = self._masks(groups, scores, counts)
        apply_group_masks(masks)
        probe = None
        if not self.exact:
            probe = next(C._batches(self.data, self.batch_size, 1))[0]
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "compact rebuilt", UserWarning)
            small = compact(self.model, masks, exact=self.exact, data=probe)
        for group, keep in masks.items():
            self._plan[_key(group)]["pruned"] += int((~keep).sum())
        self.model = self._compile(small)
        cost = model_cost(self.model, self.input_shape, warn=False)
        self._layers_after = _layer_costs(cost)
        step_target = None
        if self._target["kind"] != "ratio":
            full = self._target["full"]
            step_target = int(
                round(full - (full - self._target["value"]) * fraction)
            )
        self._history.append({
            "step": self._step, "macs": int(cost.macs),
            "params": int(cost.params), "target": step_target,
        })
        if probe is not None:
            self._history[-1]["difference"] = (
                small.compaction_difference.as_dict()
            )
        self._seconds += time.perf_counter() - start
        if self.verbose:
            print(
                f"Pruner step {self._step}/{self.steps}: MACs "
                f"{cost.macs:,} ({100 * cost.macs / self.macs_before:.1f}%), "
                f"params {cost.params:,}"
            )
        if self._step < self.steps:
            self.model = self._finetune(self.model)
        elif step_target is not None:
            reached = self._history[-1][self._target["kind"]]
            if reached < step_target * (1 - TOLERANCE):
                warnings.warn(
                    f"prune reached {reached:,} {self._target['kind']} for "
                    f"a target of {step_target:,} "
                    f"({100 * (1 - reached / step_target):.1f}% below): "
                    "the next unit up would exceed the target. The units "
                    "are too coarse (large `round_to`, few groups) for a "
                    f"{100 * TOLERANCE:g}% fit.",
                    UserWarning,
                    stacklevel=2,
                )
        return self.model

    def run(self):
        """Runs the remaining steps; returns `(model, report)`."""
        while self._step < self.steps:
            self.step()
        return self.model, self.report

    def _group_changes(self):
        """`GroupChange`s with the MACs / params of each group's producer
        layers (a layer producing several groups counts in the first)."""
        changes, counted = [], set()
        for e in self._plan.values():
            layers = [p for p in e["layers"] if p not in counted]
            counted.update(layers)
            figures = [
                _sum_of(layers, table, i)
                for table in (self._layers_before, self._layers_after)
                for i in (0, 1)
            ]
            changes.append(GroupChange(
                e["name"], e["layers"], e["size"], e["size"] - e["pruned"],
                macs_before=figures[0], params_before=figures[1],
                macs_after=figures[2], params_after=figures[3],
            ))
        return changes

    @property
    def report(self):
        """The `PruningReport` of the steps run so far."""
        last = self._history[-1] if self._history else {
            "macs": self.macs_before, "params": self.params_before
        }
        target = dict(self._target)
        if target["kind"] == "ratio":
            free = [e for e in self._plan.values() if not e["excluded"]]
            reached = sum(e["pruned"] for e in free) / max(
                sum(e["size"] for e in free), 1
            )
        else:
            reached = last[target["kind"]]
        name = self.criterion if isinstance(self.criterion, str) else (
            getattr(self.criterion, "__name__", repr(self.criterion))
        )
        return PruningReport(
            criterion=name,
            scope=self.scope,
            groups=self._group_changes(),
            macs_before=self.macs_before,
            macs_after=last["macs"],
            params_before=self.params_before,
            params_after=last["params"],
            target=target,
            reached=reached,
            steps=self._history,
            seconds=self._seconds,
        )


def prune(model, ratio=None, **kwargs):
    """Prunes a trained model in one call; returns `(model, report)`.

    `prune(model, ...)` is `Pruner(model, ...).run()`: see `Pruner` for
    every argument. The returned model is physically smaller, computes the
    same function as the masked input model (which is left masked), and is
    compiled like the input model when that one was compiled.

    Returns:
        `(model, report)`: the compacted `keras.Model` and a
        `PruningReport` (per group before/after, MACs and parameters
        before/after, the target and what was reached).

    Examples:
        >>> model = keras.Sequential([
        ...     keras.Input((32,)),
        ...     keras.layers.Dense(128, activation="relu", name="a"),
        ...     keras.layers.Dense(128, activation="relu", name="b"),
        ...     keras.layers.Dense(10)])
        >>> small, report = keras_dynfilt.pruning.prune(
        ...     model, target_macs=0.5, scope="global")
        >>> report.target["value"]
        10880
        >>> 0.99 * 10880 <= report.macs_after <= 10880
        True
    """
    return Pruner(model, ratio=ratio, **kwargs).run()
