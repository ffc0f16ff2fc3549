"""ConvNeXt pruned in the exact and in the inexact mode, side by side.

ConvNeXt normalises its residual stream with a LayerNormalization over
channels in every block, so the exact mode (`filter_groups(model)`) can
prune only the 4C expansions. The inexact mode
(`filter_groups(model, exact=False)`) also prunes the stream, with the
norms' gamma/beta entries; `compact(model, exact=False, data=x)` reports
the measured output difference. For each mode this builds the model with
`weights=None` and random weights, zeroes the `floor(rate * N)` lowest-L2
units of every group, compacts, and records MACs and parameters before and
after, the masked-vs-compacted difference and the `safe_mode` reload. It
prints a table and writes JSON.

    python benchmarks/convnext_inexact.py \
        --output docs/results/pruning/convnext_inexact.json
"""

import argparse
import json
import os
import platform
import tempfile
import time
import warnings

import keras
import numpy as np

from keras_dynfilt import pruning


def randomize(model, seed):
    rng = np.random.default_rng(seed)
    for w in model.weights:
        shape = tuple(w.shape)
        if w.name in ("gamma", "beta", "bias"):
            value = rng.normal(0.3, 0.5, shape)
        elif len(shape) > 1:
            fan_in = int(np.prod(shape[:-2])) if "depthwise" in w.path else (
                int(np.prod(shape[:-1]))
            )
            value = rng.normal(0.0, 1.0 / np.sqrt(fan_in), shape)
        else:
            continue
        w.assign(value.astype(w.dtype))


def prune_lowest_l2(groups, rate):
    masks = {}
    for group in groups:
        n = min(group.size - 1, int(group.size * rate))
        if n <= 0:
            continue
        norms = np.linalg.norm(group.filter_weights(), axis=1)
        masks[group] = pruning.criteria.lowest(norms, n)
    pruning.apply_group_masks(masks)


def check(name, size, rate, seed, exact):
    keras.backend.clear_session()
    model = getattr(keras.applications, name)(
        weights=None, input_shape=(size, size, 3), classes=10,
        classifier_activation=None,
    )
    randomize(model, seed)
    x = np.random.default_rng(seed + 1).uniform(
        0, 255, (4, size, size, 3)
    ).astype("float32")
    start = time.perf_counter()
    groups = pruning.filter_groups(model, warn=False, exact=exact)
    row = {
        "model": name, "input": size, "exact": exact, "rate": rate,
        "groups": len(groups), "units": int(sum(g.size for g in groups)),
        "prunable_fraction": groups.prunable_fraction(),
        "analysis_s": time.perf_counter() - start,
    }
    full = pruning.model_cost(model, warn=False)
    prune_lowest_l2(groups, rate)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        small = pruning.compact(model, exact=exact, data=x)
    row["warning"] = "; ".join(str(w.message)[:200] for w in caught)
    after = pruning.model_cost(small, warn=False)
    difference = small.compaction_difference
    row.update(
        macs=full.macs, macs_compacted=after.macs,
        macs_cut=1 - after.macs / full.macs,
        params=full.params, params_compacted=after.params,
        params_cut=1 - after.params / full.params,
        difference=difference.as_dict(),
    )
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "small.keras")
        small.save(path)
        loaded = keras.saving.load_model(path, safe_mode=True)
        a = keras.ops.convert_to_numpy(small(x, training=False))
        b = keras.ops.convert_to_numpy(loaded(x, training=False))
    row["reload_max_abs"] = float(np.abs(a - b).max())
    return row


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="*", default=["ConvNeXtTiny"])
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--rate", type=float, default=0.3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", default="convnext_inexact.json")
    args = parser.parse_args()
    rows = [
        check(name, args.size, args.rate, args.seed, exact)
        for name in args.models
        for exact in (True, False)
    ]
    print(
        f"{'model':<16}{'mode':<9}{'groups':>7}{'MACs before -> after':>28}"
        f"{'MACs cut':>10}{'params cut':>12}{'max |diff|':>12}"
    )
    for r in rows:
        print(
            f"{r['model']:<16}{'exact' if r['exact'] else 'inexact':<9}"
            f"{r['groups']:>7}"
            f"{r['macs'] / 1e6:>13.1f} M -> {r['macs_compacted'] / 1e6:.1f} M"
            f"{100 * r['macs_cut']:>9.1f}%{100 * r['params_cut']:>11.1f}%"
            f"{r['difference']['max_abs']:>12.3g}"
        )
    with open(args.output, "w") as f:
        json.dump(
            {
                "arguments": vars(args),
                "versions": {
                    "keras": keras.__version__,
                    "backend": keras.backend.backend(),
                    "python": platform.python_version(),
                },
                "models": rows,
            },
            f, indent=2,
        )


if __name__ == "__main__":
    main()
