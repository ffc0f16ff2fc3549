"""Train a small Vision Transformer on Fashion-MNIST, prune its heads, MLP
widths and residual width, fine-tune, and record what it costs.

Two stages, each resumable from the files the previous one wrote:

- `--stage base`: trains `keras_dynfilt.models.vit` on Fashion-MNIST (the
  offline IDX files of Debian's `dataset-fashion-mnist`) and saves
  `runs/vit/seed_<n>/base.keras` and `base.json`.
- `--stage prune`: loads the base model and, for each rate in `--rates`,
  prunes that fraction of every attention block's heads and every MLP's
  hidden units (exact: the masked and the compacted model compute the same
  function), and, in the explicit inexact mode
  (`filter_groups(model, exact=False)`), also of the residual width
  (channels that feed LayerNormalization); compacts, measures the accuracy
  right after pruning, fine-tunes `--finetune-epochs` epochs and measures
  it again, with multiply-adds, parameters and CPU latency at batch 1 and
  64 (`keras_dynfilt.pruning.inference_latency`, timed interleaved with
  the base model). Writes `docs/results/pruning/vit/seed_<n>.json`.

    python examples/transformer/prune_vit.py --stage base --seed 0
    python examples/transformer/prune_vit.py --stage prune --seed 0
"""

import argparse
import json
import os
import platform
import sys
import time

import keras
import numpy as np

import keras_dynfilt
from keras_dynfilt import training

RESULTS_DIR = os.path.join("docs", "results", "pruning", "vit")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--stage", choices=("base", "prune"), required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--dataset", default="fashion_mnist",
        help="any name `keras_dynfilt.training.load_image_data` takes "
        "('digits': scikit-learn's 8x8 digits, for smoke runs)",
    )
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--finetune-epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--finetune-learning-rate", type=float, default=3e-4)
    parser.add_argument("--patch-size", type=int, default=7)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--depth", type=int, default=4)
    parser.add_argument("--num-heads", type=int, default=4)
    parser.add_argument("--mlp-dim", type=int, default=128)
    parser.add_argument(
        "--rates", type=float, nargs="+", default=[0.3, 0.5],
        help="fractions of heads / MLP units / residual channels removed",
    )
    parser.add_argument("--timing-repeats", type=int, default=30)
    parser.add_argument("--steps-per-epoch", type=int, default=None)
    parser.add_argument("--limit-train", type=int, default=None)
    parser.add_argument("--run-dir", default=os.path.join("runs", "vit"))
    parser.add_argument("--results-dir", default=RESULTS_DIR)
    parser.add_argument("--verbose", type=int, default=2, choices=(0, 1, 2))
    return parser.parse_args(argv)


def load_data(args):
    data = training.load_image_data(
        args.dataset,
        args.batch_size,
        seed=args.seed,
        limit_train=args.limit_train,
    )
    print(
        f"dataset {data.name} ({data.source}): {data.num_train} train / "
        f"{data.num_test} test",
        flush=True,
    )
    return data


def compile_model(model, learning_rate, steps):
    schedule = keras.optimizers.schedules.CosineDecay(
        learning_rate, decay_steps=max(steps, 1)
    )
    model.compile(
        optimizer=keras.optimizers.AdamW(schedule, weight_decay=1e-4),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )


def steps_per_epoch(args, data):
    if args.steps_per_epoch:
        return args.steps_per_epoch
    return -(-data.num_train // args.batch_size)


class EpochTimes(keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
        self.seconds = []

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(time.perf_counter() - self._start)


def run_dir(args):
    return os.path.join(args.run_dir, f"seed_{args.seed}")


def stage_base(args, command):
    keras.utils.set_random_seed(args.seed)
    data = load_data(args)
    model = keras_dynfilt.models.vit(
        data.input_shape,
        data.num_classes,
        patch_size=args.patch_size,
        dim=args.dim,
        depth=args.depth,
        num_heads=args.num_heads,
        mlp_dim=args.mlp_dim,
    )
    steps = steps_per_epoch(args, data)
    compile_model(model, args.learning_rate, steps * args.epochs)
    timer = EpochTimes()
    history = model.fit(
        data.train,
        epochs=args.epochs,
        steps_per_epoch=args.steps_per_epoch,
        validation_data=data.test,
        callbacks=[timer],
        verbose=args.verbose,
        shuffle=False,  # the pipeline shuffles; Keras would warn
    )
    folder = run_dir(args)
    os.makedirs(folder, exist_ok=True)
    model.save(os.path.join(folder, "base.keras"))
    metrics = model.evaluate(data.test, return_dict=True, verbose=0)
    record = {
        "command": command,
        "seed": args.seed,
        "config": {
            k: getattr(args, k)
            for k in (
                "epochs", "batch_size", "learning_rate", "patch_size", "dim",
                "depth", "num_heads", "mlp_dim", "steps_per_epoch",
                "limit_train",
            )
        },
        "test_accuracy": float(metrics["accuracy"]),
        "history": {
            k: [float(v) for v in vs] for k, vs in history.history.items()
        },
        "epoch_seconds": timer.seconds,
    }
    with open(os.path.join(folder, "base.json"), "w") as f:
        json.dump(record, f, indent=2)
    print(f"base test accuracy {metrics['accuracy']:.4f}", flush=True)


def group_kind(group, model):
    """`"heads"`, `"mlp"`, `"residual"` or `None` (not pruned here)."""
    layers = group.layers
    if "patch_embed" in layers:
        return "residual"
    if len(layers) == 1 and layers[0].endswith("_mlp1"):
        return "mlp"
    if len(layers) == 1 and layers[0].endswith("_attention"):
        heads = model.get_layer(layers[0]).num_heads
        if all(i < heads for unit in group.units for _, i in unit):
            return "heads"
    return None


def prune_masks(model, rate, exact):
    """Masks the `rate` fraction of lowest-L2 units of every head, MLP
    and (inexact mode) residual group; returns what was pruned."""
    groups = keras_dynfilt.pruning.filter_groups(
        model, warn=False, exact=exact
    )
    pruned = {}
    masks = {}
    for group in groups:
        kind = group_kind(group, model)
        if kind is None or (kind == "residual" and exact):
            continue
        remove = int(round(rate * group.size))
        if remove == 0 or remove >= group.size:
            continue
        norms = np.linalg.norm(group.filter_weights(), axis=1)
        masks[group] = keras_dynfilt.pruning.criteria.lowest(norms, remove)
        pruned[group.name] = {
            "kind": kind, "units": group.size, "removed": remove,
        }
    keras_dynfilt.pruning.apply_group_masks(masks)
    return pruned


def evaluate(model, data):
    model.compile(
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return float(model.evaluate(data.test, return_dict=True, verbose=0)[
        "accuracy"
    ])


def cost(model):
    found = keras_dynfilt.pruning.model_cost(model, warn=False)
    return {"macs": int(found.macs), "params": int(found.params)}


def latency(models, x, repeats):
    batches = {1: x[:1], 64: x[:64]}
    return {
        f"batch_{b}_ms": [
            1e3 * s
            for s in keras_dynfilt.pruning.inference_latency(
                models, xb, repeats=repeats
            )
        ]
        for b, xb in batches.items()
    }


def stage_prune(args, command):
    keras.utils.set_random_seed(args.seed)
    folder = run_dir(args)
    with open(os.path.join(folder, "base.json")) as f:
        base_record = json.load(f)
    path = os.path.join(folder, "base.keras")
    base = keras.saving.load_model(path, safe_mode=True)
    data = load_data(args)
    x_test, _ = training.numpy_split(data, "test")
    probe = x_test[:256]
    base_accuracy = evaluate(base, data)
    variants = []
    for rate in args.rates:
        for exact in (True, False):
            name = f"{'exact' if exact else 'inexact'}_{int(100 * rate)}"
            print(f"--- {name}", flush=True)
            model = keras.saving.load_model(path, safe_mode=True)
            pruned = prune_masks(model, rate, exact)
            masked_accuracy = evaluate(model, data)
            small = keras_dynfilt.pruning.compact(
                model, exact=exact, data=probe
            )
            difference = small.compaction_difference.as_dict()
            small.save(os.path.join(folder, f"{name}.keras"))
            pruned_accuracy = evaluate(small, data)
            steps = steps_per_epoch(args, data)
            compile_model(
                small, args.finetune_learning_rate,
                steps * args.finetune_epochs,
            )
            timer = EpochTimes()
            small.fit(
                data.train,
                epochs=args.finetune_epochs,
                steps_per_epoch=args.steps_per_epoch,
                callbacks=[timer],
                verbose=args.verbose,
                shuffle=False,  # the pipeline shuffles; Keras would warn
            )
            small.save(os.path.join(folder, f"{name}_finetuned.keras"))
            tuned_accuracy = evaluate(small, data)
            record = {
                "name": name,
                "exact": exact,
                "rate": rate,
                "pruned_groups": pruned,
                "accuracy_masked": masked_accuracy,
                "accuracy_pruned": pruned_accuracy,
                "accuracy_finetuned": tuned_accuracy,
                "compaction_difference": difference,
                "finetune_epoch_seconds": timer.seconds,
                **cost(small),
                "latency": latency(
                    [base, small], x_test, args.timing_repeats
                ),
            }
            print(json.dumps(record, indent=1), flush=True)
            variants.append(record)
            # Written after every variant: a run cut short keeps its part.
            write_result(
                args, command, base_record, data, base, base_accuracy,
                variants, complete=False,
            )
    write_result(
        args, command, base_record, data, base, base_accuracy, variants,
        complete=True,
    )


def write_result(
    args, command, base_record, data, base, base_accuracy, variants,
    complete,
):
    result = {
        "command": command,
        "base_command": base_record["command"],
        "complete": complete,
        "seed": args.seed,
        "dataset": f"{data.name} ({data.source})",
        "keras": keras.__version__,
        "backend": keras.backend.backend(),
        "threads": {
            k: os.environ.get(k)
            for k in ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS")
        },
        "config": base_record["config"],
        "finetune_epochs": args.finetune_epochs,
        "finetune_learning_rate": args.finetune_learning_rate,
        "criterion": "L2 norm of each unit's parameters (filter_weights)",
        "base": {
            "accuracy": base_accuracy,
            "epoch_seconds": base_record["epoch_seconds"],
            **cost(base),
        },
        "variants": variants,
        "latency_note": "median ms per call, [base, pruned] timed "
        "interleaved in the same run (compare as ratios)",
    }
    os.makedirs(args.results_dir, exist_ok=True)
    out = os.path.join(args.results_dir, f"seed_{args.seed}.json")
    with open(out, "w") as f:
        json.dump(result, f, indent=2)
    print(f"wrote {out} (complete: {complete})", flush=True)


def main(argv=None):
    args = parse_args(argv)
    command = " ".join(["python"] + [sys.argv[0]] + (argv or sys.argv[1:]))
    print(
        f"keras {keras.__version__}, backend {keras.backend.backend()}, "
        f"{platform.machine()}",
        flush=True,
    )
    if args.stage == "base":
        stage_base(args, command)
    else:
        stage_prune(args, command)


if __name__ == "__main__":
    main()
