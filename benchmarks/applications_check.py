"""Structured pruning on every keras.applications architecture.

For each model (built with `weights=None` at a small input, random BN
statistics and biases): find the filter groups, zero the `floor(rate * N)`
lowest-L2 units of every group (as `SoftFilterPruning` does), `compact`,
and check that the masked full model and the compacted model agree, that
`model_cost(compacted=True)` prices the compacted model exactly, and that
the compacted model reloads from `.keras` with `safe_mode=True`.
A correctness check, not a timing: it prints a table and writes JSON.

    python benchmarks/applications_check.py \
        --output docs/results/pruning/applications.json
    python benchmarks/applications_check.py --models MobileNetV3Small ResNet50
"""

import argparse
import inspect
import json
import os
import platform
import sys
import tempfile
import time
import traceback
import warnings

import keras
import numpy as np

from keras_dynfilt import pruning
from keras_dynfilt.pruning import criteria

# The random weights of the pruning tests (one copy, in tests/): this script
# runs from a checkout, as the tests do.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from tests.random_weights import randomize  # noqa: E402

# Architectures with a larger minimum input size.
MIN_INPUT = {
    "InceptionV3": 75, "InceptionResNetV2": 75, "Xception": 71,
    "NASNetMobile": 32, "NASNetLarge": 32,
}


def applications():
    return sorted(
        name for name, fn in inspect.getmembers(keras.applications)
        if callable(fn) and name[:1].isupper()
    )


def calibrate(model, x, seed):
    """Moving statistics of one batch, random gamma in [0.5, 1.5].

    With statistics drawn at random every BN shrinks the input-dependent
    part of the signal, and a deep network's output ends up the same for
    every input (masked == compacted would then test biases only). One
    training-mode call with momentum 0 writes each BN's batch statistics
    into its moving statistics; beta and biases stay random.
    """
    rng = np.random.default_rng(seed)
    norms = [layer for layer in model._flatten_layers()
             if isinstance(layer, keras.layers.BatchNormalization)]
    momentum = [layer.momentum for layer in norms]
    for layer in norms:
        layer.momentum = 0.0
        if layer.gamma is not None:
            layer.gamma.assign(
                rng.uniform(0.5, 1.5, layer.gamma.shape).astype(
                    layer.gamma.dtype)
            )
    model(x, training=True)
    for layer, value in zip(norms, momentum):
        layer.momentum = value


def prune_lowest_l2(groups, rate):
    """Zeroes the `pruned_count(N, rate)` lowest-L2 units of every group."""
    groups = list(groups)
    masks = {}
    for group, scores in zip(groups, criteria.score_groups(groups, "l2")):
        n = criteria.pruned_count(group.size, rate)
        if n > 0:
            masks[group] = criteria.lowest(scores, n)
    pruning.apply_group_masks(masks)  # one assignment per weight


def relative_difference(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.abs(a - b).max() / max(np.abs(a).max(), 1e-12))


def check(name, size, rate, seed, batch):
    row = {"model": name, "input": size}
    start = time.perf_counter()
    fn = getattr(keras.applications, name)
    kwargs = {}
    if "classifier_activation" in inspect.signature(fn).parameters:
        kwargs["classifier_activation"] = None  # compare logits
    model = fn(weights=None, input_shape=(size, size, 3), classes=10,
               **kwargs)
    row["build_s"] = time.perf_counter() - start
    randomize(model, seed)
    for layer in model._flatten_layers():  # fan-in of a depthwise filter
        if isinstance(layer, keras.layers.DepthwiseConv2D):
            shape = tuple(layer.kernel.shape)
            layer.kernel.assign(np.random.default_rng(seed).normal(
                0, 1 / np.sqrt(shape[0] * shape[1]), shape
            ).astype(layer.kernel.dtype))
    x = np.random.default_rng(seed + 1).uniform(
        0, 255, (batch, size, size, 3)
    ).astype(keras.config.floatx())
    calibrate(model, x, seed)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        groups = pruning.filter_groups(model)
    row["warning"] = "; ".join(str(w.message)[:300] for w in caught)
    row["groups"] = len(groups)
    row["units"] = int(sum(g.size for g in groups))
    row["barriers"] = sorted({b.class_name for b in groups.barriers})
    row["prunable_fraction"] = groups.prunable_fraction()
    row["held_fixed"] = [
        {"reason": h.reason, "filters": h.filters, "layers": len(h.layers)}
        for h in groups.held_fixed()[:5]
    ]
    full = pruning.model_cost(model)
    prune_lowest_l2(groups, rate)
    priced = pruning.model_cost(model, compacted=True)
    start = time.perf_counter()
    small = pruning.compact(model)
    row["compact_s"] = time.perf_counter() - start
    after = pruning.model_cost(small)
    row.update(
        macs=full.macs, macs_compacted=after.macs,
        macs_cut=pruning.macs_reduction(full, after),
        params=model.count_params(), params_compacted=small.count_params(),
        cost_matches=bool(priced.macs == after.macs
                          and priced.params == small.count_params()),
        unknown_cost=full.unknown[:5],
    )
    masked = keras.ops.convert_to_numpy(model(x, training=False))
    # How much the output depends on the input (0: a constant network).
    row["output_spread"] = float(
        np.abs(masked - masked.mean(0)).max() / max(np.abs(masked).max(), 1e-12)
    )
    compacted = keras.ops.convert_to_numpy(small(x, training=False))
    row["max_rel_diff"] = relative_difference(masked, compacted)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "small.keras")
        small.save(path)
        loaded = keras.saving.load_model(path, safe_mode=True)
        reloaded = keras.ops.convert_to_numpy(loaded(x, training=False))
    row["reload_rel_diff"] = relative_difference(compacted, reloaded)
    row["ok"] = bool(
        row["max_rel_diff"] <= 1e-4 and row["reload_rel_diff"] <= 1e-6
        and row["cost_matches"] and row["output_spread"] > 1e-3
    )
    return row


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="*", default=None)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--rate", type=float, default=0.3)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", default="applications.json")
    parser.add_argument(
        "--dtype", default="float32", choices=("float32", "float64"),
        help="keras.config.floatx() for the whole check; float64 separates "
        "rounding amplified by a deep random network from a compaction bug",
    )
    args = parser.parse_args()
    keras.config.set_floatx(args.dtype)
    names = args.models or applications()
    results = {
        "arguments": vars(args),
        "versions": {
            "keras": keras.__version__, "backend": keras.backend.backend(),
            "floatx": keras.config.floatx(),
            "python": platform.python_version(),
        },
        "models": [],
    }
    for name in names:
        keras.backend.clear_session()
        size = max(args.size, MIN_INPUT.get(name, 0))
        try:
            row = check(name, size, args.rate, args.seed, args.batch)
        except Exception as e:  # noqa: BLE001 - reported, not swallowed
            row = {"model": name, "input": size, "ok": False,
                   "error": f"{type(e).__name__}: {e}"[:500],
                   "traceback": traceback.format_exc()[-2000:]}
        results["models"].append(row)
        print(
            f"{name:<20} groups={row.get('groups', '-'):>4} "
            f"cut={100 * row.get('macs_cut', float('nan')):5.1f}% "
            f"diff={row.get('max_rel_diff', float('nan')):.1e} "
            f"ok={row['ok']} {row.get('error', '')}",
            flush=True,
        )
        with open(args.output, "w") as f:
            json.dump(results, f, indent=1)
    failed = [r["model"] for r in results["models"] if not r["ok"]]
    print(f"{len(names) - len(failed)} passed, {len(failed)} failed")


if __name__ == "__main__":
    main()
