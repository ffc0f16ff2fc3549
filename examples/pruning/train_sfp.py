"""Soft Filter Pruning of a CIFAR ResNet trained from scratch, then compacted.

Trains `keras_dynfilt.models.resnet_cifar(depth)` with
`keras_dynfilt.callbacks.SoftFilterPruning` (or without it: the baseline),
evaluates the masked model, compacts it with `keras_dynfilt.pruning.compact`,
evaluates the compacted model (the two accuracies must be equal), and, side
by side, the soft-masked model just before the final mask (kernels zeroed,
BatchNormalization shifts still in place: the model the reference code's
last epoch reports) and the last epoch's validation accuracy (which
describes the returned model: with `--val-batches` on part of the test
split only). Also counts
FLOPs (multiply-adds) and parameters before and after, and times inference
of the masked full-size model against the compacted one in the same run.
Writes `results.json`, `learning_curves.png` and `sfp_curves.png` (test
accuracy, sparsity and FLOPs over epochs) into `--output-dir`.

    python examples/pruning/train_sfp.py --method sfp --depth 20 \
        --pruning-rate 0.3 --epochs 10 --output-dir runs/sfp/sfp
    python examples/pruning/train_sfp.py --method fpgm ...
    python examples/pruning/train_sfp.py --method baseline ...
    python examples/pruning/train_sfp.py --compare runs/sfp   # summary plot

Fashion-MNIST comes from Debian's local files by default; `--dataset
cifar10` reads CIFAR-10 through tensorflow-datasets (online, or offline with
`--data-dir` holding `cifar-10-binary.tar.gz`).
"""

import json
import math
import os
import pathlib
import time

import keras
import numpy as np

import keras_dynfilt
from keras_dynfilt import training
from keras_dynfilt.pruning import compact, inference_latency, model_cost


class SoftSnapshot(keras.callbacks.Callback):
    """Keeps the weights of the soft-masked model before the final mask.

    Placed before `SoftFilterPruning` in the callback list, so its hooks run
    first: at the start of the fine-tuning epochs, or at the last epoch's
    validation (or end, without validation), where the callback applies
    its final mask.
    """

    def __init__(self, finetune_epochs):
        super().__init__()
        self.finetune_epochs = finetune_epochs
        self.weights = None

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch
        if self.finetune_epochs and epoch == (
            self.params["epochs"] - self.finetune_epochs
        ):
            self.weights = self.model.get_weights()

    def _last(self):
        return self._epoch + 1 == self.params["epochs"]

    def on_test_begin(self, logs=None):
        if not self.finetune_epochs and self._last() and self.weights is None:
            self.weights = self.model.get_weights()

    def on_epoch_end(self, epoch, logs=None):
        if not self.finetune_epochs and self._last() and self.weights is None:
            self.weights = self.model.get_weights()


def plot_sfp(histories, path, title):
    """Test accuracy, sparsity and FLOPs fraction per epoch, per run."""
    try:
        import matplotlib
    except ImportError:  # matplotlib is the `plot` extra (not on the GPU)
        print(f"matplotlib is not installed: {path} not written (install "
              "the `plot` extra: pip install 'keras-dynfilt[plot]')")
        return None

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = [
        ("val_accuracy", "test accuracy (before the epoch's mask)"),
        ("sparsity", "sparsity (filters zeroed)"),
        ("flops_fraction", "FLOPs of the compacted model / full"),
    ]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.4))
    colors = {name: f"C{i}" for i, name in enumerate(histories)}
    for ax, (key, label) in zip(axes, keys):
        for name, hist in histories.items():
            if key in hist:
                epochs = np.arange(1, len(hist[key]) + 1)
                ax.plot(epochs, hist[key], marker="o", label=name,
                        color=colors[name])
        ax.set_xlabel("epoch")
        ax.set_title(label, fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def compare(root):
    """Plots every run under `root` together and prints a summary table."""
    runs = {}
    for path in sorted(pathlib.Path(root).rglob("results.json")):
        with open(path) as f:
            result = json.load(f)
        runs[str(path.parent.relative_to(root))] = result
    if not runs:
        raise ValueError(f"No results.json under {root!r}.")
    plot_sfp(
        {name: r["history"] for name, r in runs.items()},
        os.path.join(root, "sfp_comparison.png"),
        "ResNet on " + next(iter(runs.values()))["dataset"]["name"],
    )
    print(
        "| run | method | test acc. (soft-masked) | test acc. (masked) | "
        "test acc. (compacted) | "
        "FLOPs reduction | params reduction | speed-up b1 | speed-up b64 |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for name, r in runs.items():
        p = r["pruning"]
        soft = p.get("soft_masked_accuracy")
        print(
            f"| {name} | {r['arguments']['method']} | "
            f"{'-' if soft is None else f'{100 * soft:.2f}'} | "
            f"{100 * r['test']['accuracy']:.2f} | "
            f"{100 * p['compacted_accuracy']:.2f} | "
            f"{100 * p['flops_reduction']:.1f}% | "
            f"{100 * p['params_reduction']:.1f}% | "
            f"{p['speedup'].get('1', float('nan')):.2f}x | "
            f"{p['speedup'].get('64', float('nan')):.2f}x |"
        )


def main(argv=None):
    parser = training.example_argument_parser(
        __doc__.splitlines()[0], dataset="fashion_mnist", epochs=10,
        batch_size=128, output_dir="runs/sfp",
    )
    parser.add_argument(
        "--method", default="sfp", choices=("baseline", "sfp", "fpgm"),
        help="baseline: no pruning; sfp: L2-norm criterion; fpgm: "
        "geometric-median criterion",
    )
    parser.add_argument("--depth", type=int, default=20)
    parser.add_argument(
        "--pruning-rate", type=float, default=None,
        help="default: 0.4 for ResNet-56, else 0.3 (the paper's rates)",
    )
    parser.add_argument("--frequency", type=int, default=1)
    parser.add_argument(
        "--finetune-epochs", type=int, default=0,
        help="last epochs trained with the final mask held fixed",
    )
    parser.add_argument("--learning-rate", type=float, default=0.1)
    parser.add_argument("--weight-decay", type=float, default=5e-4)
    parser.add_argument(
        "--val-batches", type=int, default=None,
        help="validate each epoch on this many test batches only (the "
        "final evaluations always use the whole test split)",
    )
    parser.add_argument(
        "--timing-repeats", type=int, default=25,
        help="interleaved repeats when timing inference",
    )
    parser.add_argument(
        "--compare", default=None, metavar="DIR",
        help="only plot and tabulate the runs under DIR",
    )
    args = parser.parse_args(argv)
    if args.compare:
        return compare(args.compare)
    if args.pruning_rate is None:
        args.pruning_rate = 0.4 if args.depth == 56 else 0.3

    run = training.ExperimentRun.from_args(args)
    data = run.load_data()
    print(
        f"dataset {data.name} ({data.source}): {data.num_train} train / "
        f"{data.num_test} test; ResNet-{args.depth}, {args.method}"
    )
    steps = args.steps_per_epoch or math.ceil(
        data.num_train / args.batch_size
    )
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    with run.strategy.scope():
        model = keras_dynfilt.models.resnet_cifar(
            args.depth,
            num_classes=data.num_classes,
            input_shape=data.input_shape,
            weight_decay=args.weight_decay,
        )
        schedule = keras.optimizers.schedules.CosineDecay(
            args.learning_rate, decay_steps=steps * args.epochs
        )
        run.compile(
            model,
            optimizer=keras.optimizers.SGD(
                schedule, momentum=0.9, nesterov=True
            ),
            loss=loss,
            metrics=["accuracy"],
        )
    callbacks = []
    sfp = None
    if args.method != "baseline":
        sfp = keras_dynfilt.callbacks.SoftFilterPruning(
            pruning_rate=args.pruning_rate,
            criterion="l2" if args.method == "sfp" else "fpgm",
            frequency=args.frequency,
            finetune_epochs=args.finetune_epochs,
            verbose=1,
        )
        snapshot = SoftSnapshot(args.finetune_epochs)
        callbacks += [snapshot, sfp]
    history = model.fit(
        data.train,
        shuffle=False,  # the pipeline shuffles; Keras would warn
        epochs=args.epochs,
        steps_per_epoch=args.steps_per_epoch,
        validation_data=(
            data.test.take(args.val_batches) if args.val_batches
            else data.test
        ),
        callbacks=run.callbacks(callbacks),
        verbose=args.verbose,
    )
    print("evaluating the masked, compacted and soft-masked models on the "
          "test split...", flush=True)
    metrics = model.evaluate(data.test, return_dict=True, verbose=0)

    # Compact: the zeroed filters go; the baseline has none to remove.
    start = time.perf_counter()
    small = sfp.compact_model() if sfp is not None else compact(model)
    compaction_seconds = time.perf_counter() - start
    with run.strategy.scope():
        small.compile(loss=loss, metrics=["accuracy"])
    small_metrics = small.evaluate(data.test, return_dict=True, verbose=0)
    soft_accuracy = None
    if sfp is not None:
        # The soft-masked model: same architecture, weights before the
        # final mask.
        with run.strategy.scope():
            soft = keras.models.clone_model(model)
            soft.set_weights(snapshot.weights)
            soft.compile(loss=loss, metrics=["accuracy"])
        soft_accuracy = soft.evaluate(
            data.test, return_dict=True, verbose=0)["accuracy"]
        del soft
    x_test, _ = training.numpy_split(data, "test")
    logits = model.predict(x_test[:512], verbose=0)
    small_logits = small.predict(x_test[:512], verbose=0)
    full_cost, small_cost = model_cost(model), model_cost(small)
    print(f"timing inference at batch 1 and 64 ({args.timing_repeats} "
          "repeats)...", flush=True)
    timings = {}
    for batch in (1, 64):
        masked_s, compact_s = inference_latency(
            [model, small], x_test[:batch], repeats=args.timing_repeats,
            calls=3,
        )
        timings[str(batch)] = {
            "masked_seconds": masked_s, "compacted_seconds": compact_s,
        }
    pruning = {
        "method": args.method,
        "pruning_rate": None if sfp is None else args.pruning_rate,
        "finetune_epochs": args.finetune_epochs,
        "soft_masked_accuracy": soft_accuracy,
        "masked_accuracy": metrics["accuracy"],
        "compacted_accuracy": small_metrics["accuracy"],
        "last_val_accuracy": history.history["val_accuracy"][-1],
        "last_val_on_whole_test_split": not args.val_batches,
        "max_abs_logit_difference": float(
            np.abs(logits - small_logits).max()
        ),
        "max_abs_logit": float(np.abs(logits).max()),
        "macs": full_cost.macs,
        "compacted_macs": small_cost.macs,
        "flops_reduction": keras_dynfilt.pruning.macs_reduction(
            full_cost, small_cost
        ),
        "params": full_cost.params,
        "compacted_params": small_cost.params,
        "params_reduction": 1 - small_cost.params / full_cost.params,
        "compaction_seconds": compaction_seconds,
        "inference": timings,
        "speedup": {
            b: t["masked_seconds"] / t["compacted_seconds"]
            for b, t in timings.items()
        },
    }
    results = run.finish(history, metrics, extra={"pruning": pruning})
    plot_sfp(
        {args.method: results["history"]},
        os.path.join(args.output_dir, "sfp_curves.png"),
        f"ResNet-{args.depth} {args.method} on {data.name}",
    )
    if soft_accuracy is not None:
        print(
            f"test accuracy soft-masked (before the final mask) "
            f"{soft_accuracy:.4f}, last epoch's validation "
            f"{pruning['last_val_accuracy']:.4f}"
        )
    print(
        f"test accuracy masked {metrics['accuracy']:.4f}, compacted "
        f"{small_metrics['accuracy']:.4f}; FLOPs -"
        f"{100 * pruning['flops_reduction']:.1f}%, params -"
        f"{100 * pruning['params_reduction']:.1f}%; speed-up "
        f"{pruning['speedup']['1']:.2f}x (batch 1), "
        f"{pruning['speedup']['64']:.2f}x (batch 64) -> "
        f"{args.output_dir}/results.json"
    )
    return results


if __name__ == "__main__":
    main()
