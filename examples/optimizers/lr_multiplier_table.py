"""How far `LearningRateMultiplier` moves a tagged variable, per optimizer.

For every optimizer class that `keras.optimizers` exports, wraps it in
`keras_dynfilt.optimizers.LearningRateMultiplier`, tags one kernel (4x3) and
one bias (3,) with a multiplier `m` and leaves an equal pair untagged, applies
the same fixed random gradients to both pairs and reports:

* `ratio@1`, `ratio@N`: the tagged variable's displacement over the plain
  one's (norm ratio) after 1 and after N steps. `m` means a step `m` times as
  long; optimizers whose step is not proportional to the learning rate
  (relative steps, trust ratios, capped rates) show something else.
* `vs m*lr`: the largest difference between the tagged variable and the same
  variable trained alone by the same optimizer at learning rate `m * lr`,
  relative to its displacement. Zero (float32 rounding) means the wrapper is
  exactly "this variable at `m` times the learning rate".

Optimizers the wrapper rejects are listed with their error. Decoupled
weight decay is switched off here (`weight_decay=0`): it keeps the base
learning rate by design (see the class docstring).

    python examples/optimizers/lr_multiplier_table.py \\
        --output docs/results/lr_multiplier/optimizers.json
"""

import argparse
import inspect
import json

import keras
import numpy as np

from keras_dynfilt.optimizers import LearningRateMultiplier, set_lr_multiplier

LR = 0.01
SHAPES = {"kernel": (4, 3), "bias": (3,)}
# Wrappers of other optimizers, not optimizers of their own.
WRAPPERS = {"LossScaleOptimizer", "MultiOptimizer"}


def builtin_optimizers():
    """Every concrete optimizer class `keras.optimizers` exports, by name."""
    return {
        name: cls
        for name, cls in inspect.getmembers(keras.optimizers, inspect.isclass)
        if issubclass(cls, keras.optimizers.Optimizer)
        and cls is not keras.optimizers.Optimizer
    }


def make(name, learning_rate):
    cls = builtin_optimizers()[name]
    if name == "LossScaleOptimizer":
        return cls(keras.optimizers.SGD(learning_rate))
    if name == "MultiOptimizer":
        return cls(keras.optimizers.OptimizerMap(
            keras.optimizers.SGD(learning_rate)))
    if name == "Muon":  # its AdamW path has a weight decay of its own
        return cls(learning_rate=learning_rate, weight_decay=0.0,
                   adam_weight_decay=0.0)
    return cls(learning_rate=learning_rate, weight_decay=0.0)


def _gradients(steps, seed):
    rng = np.random.default_rng(seed)
    return [
        {k: rng.normal(size=s).astype("float32") for k, s in SHAPES.items()}
        for _ in range(steps)
    ]


def _initial(seed):
    rng = np.random.default_rng(seed + 1000)
    return {k: rng.normal(size=s).astype("float32") for k, s in SHAPES.items()}


def _np(x):
    return keras.ops.convert_to_numpy(x).astype("float64")


def _run(optimizer, variables, gradients):
    """Applies `gradients` (one dict per step) to `variables`, in pairs."""
    copies = len(variables) // len(SHAPES)
    for step in gradients:
        optimizer.apply([step[k] for k in SHAPES] * copies, variables)
    return [_np(v) for v in variables]


def measure(name, multiplier=100.0, steps=10, seed=0):
    """The row of the table for optimizer `name` (see the module docstring)."""
    init, gradients = _initial(seed), _gradients(steps, seed)
    try:
        wrapper = LearningRateMultiplier(make(name, LR))
    except (ValueError, TypeError) as error:
        return {"optimizer": name, "rejected": str(error)}
    row = {"optimizer": name, "multiplier": multiplier, "steps": steps}
    tagged = [keras.Variable(init[k], name=f"tagged_{k}") for k in SHAPES]
    plain = [keras.Variable(init[k], name=f"plain_{k}") for k in SHAPES]
    set_lr_multiplier(tagged, multiplier)
    variables = tagged + plain
    after_1 = _run(wrapper, variables, gradients[:1])
    after_n = _run(wrapper, variables, gradients[1:])
    for i, k in enumerate(SHAPES):
        for label, values in (("1", after_1), ("n", after_n)):
            moved_tagged = np.linalg.norm(values[i] - init[k])
            moved_plain = np.linalg.norm(values[i + len(SHAPES)] - init[k])
            row[f"{k}_ratio_{label}"] = float(moved_tagged / moved_plain)
    # The same variables trained alone at m * lr and at lr.
    for label, lr, offset in (("scaled", multiplier * LR, 0),
                              ("base", LR, len(SHAPES))):
        alone = [keras.Variable(init[k]) for k in SHAPES]
        reference = _run(make(name, lr), alone, gradients)
        errors = []
        for i, k in enumerate(SHAPES):
            scale = np.abs(reference[i] - init[k]).max()
            error = np.abs(after_n[i + offset] - reference[i]).max()
            errors.append(float(error / scale))
        row[f"vs_{label}_lr"] = max(errors)
    return row


def table(rows):
    lines = [
        "| optimizer | kernel ratio @1 | kernel ratio @10 | bias ratio @1 "
        "| bias ratio @10 | vs the optimizer at m·lr | plain vs at lr |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        if "rejected" in row:
            lines.append(f"| {row['optimizer']} | rejected: "
                         f"{row['rejected']} ||||||")
            continue
        lines.append(
            f"| {row['optimizer']} | {row['kernel_ratio_1']:.1f}x "
            f"| {row['kernel_ratio_n']:.1f}x | {row['bias_ratio_1']:.1f}x "
            f"| {row['bias_ratio_n']:.1f}x | {row['vs_scaled_lr']:.1e} "
            f"| {row['vs_base_lr']:.1e} |"
        )
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--multiplier", type=float, default=100.0)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--output")
    args = parser.parse_args()
    keras.utils.set_random_seed(0)
    rows = [measure(name, args.multiplier, args.steps)
            for name in sorted(builtin_optimizers())]
    print(table(rows))
    if args.output:
        with open(args.output, "w") as f:
            json.dump({"keras": keras.__version__,
                       "backend": keras.backend.backend(),
                       "rows": rows}, f, indent=1)
            f.write("\n")


if __name__ == "__main__":
    main()
