"""Cross-task transfer: linear probes of every layer vs transfer learning.

For every satellite task (see `common.py`) and random partition, fits a
linear probe on the pooled activations of every convolution of a trained
primary network (`keras_dynfilt.cross_task.linear_transfer`) and, in the
same run, the transfer-learning baseline of paper 001: the primary
network's convolutions frozen, new fully connected layers trained. Both are
timed (the paper: 10 s vs 780 s). Writes `results.json` and a per-layer
accuracy plot (paper Figs. 5, 6, 11).

    python examples/cross_task/train_primary.py --arch vgg \
        --output-dir runs/cross_task/vgg
    python examples/cross_task/transfer.py \
        --primary runs/cross_task/vgg/primary.keras \
        --output-dir docs/results/cross_task/transfer/vgg
"""

import os
import sys
import time

import keras
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common  # noqa: E402

from keras_dynfilt import cross_task, training  # noqa: E402


def transfer_learning(base, task, args):
    """Frozen convolutions + a new dense head, trained; returns the test
    accuracy and the wall time (build, fit, evaluate)."""
    start = time.perf_counter()
    inputs = keras.Input(base.input_shape[1:])
    x = base(inputs, training=False)
    x = keras.layers.Dense(args.head_units, activation="relu")(x)
    x = keras.layers.Dropout(0.5)(x)
    if task.kind == "binary":
        outputs = keras.layers.Dense(1)(x)
        loss = keras.losses.BinaryCrossentropy(from_logits=True)
        metric = keras.metrics.BinaryAccuracy(threshold=0.0)
        y_train, y_val, y_test = task.y_train, task.y_val, task.y_test
    else:
        # Ordinal tasks: a classifier over the bins, as transfer learning
        # of head pose is usually trained; categorical: over the classes.
        outputs = keras.layers.Dense(task.num_classes)(x)
        loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        metric = keras.metrics.SparseCategoricalAccuracy()
        y_train, y_val, y_test = (task.class_labels(y) for y in (
            task.y_train, task.y_val, task.y_test))
    model = keras.Model(inputs, outputs)
    model.compile(keras.optimizers.Adam(args.learning_rate), loss,
                  metrics=[metric])
    history = model.fit(
        task.x_train, y_train, batch_size=args.batch_size,
        epochs=args.epochs, steps_per_epoch=args.steps_per_epoch,
        validation_data=(task.x_val, y_val), verbose=0,
        callbacks=[keras.callbacks.EarlyStopping(
            "val_loss", patience=3, restore_best_weights=True)])
    _, accuracy = model.evaluate(task.x_test, y_test, verbose=0,
                                 batch_size=args.batch_size)
    return {
        "test_accuracy": float(accuracy),
        "seconds": time.perf_counter() - start,
        "epochs_run": len(history.history["loss"]),
        "trainable_params": int(sum(
            np.prod(w.shape) for w in model.trainable_weights)),
    }


def regression(model, task, args):
    """Linear probes of every convolution: features + fits, timed."""
    start = time.perf_counter()
    acts = {
        split: cross_task.pooled_activations(
            model, (getattr(task, f"x_{split}"), getattr(task, f"y_{split}")),
            batch_size=args.batch_size)
        for split in ("train", "val", "test")
    }
    result = cross_task.linear_transfer(
        acts["train"], acts["val"], task.kind, test=acts["test"],
        bins=task.bins)
    seconds = time.perf_counter() - start
    best = result.best_layer
    return {
        "best_layer": best,
        "test_accuracy": result.scores[best]["test"]["accuracy"],
        "val_accuracy": result.scores[best]["val"]["accuracy"],
        "seconds": seconds,
        "feature_seconds": sum(a.seconds for a in acts.values()),
        "fit_seconds": result.seconds,
        "layers": list(result.scores),
        "scores": result.scores,
        "thresholds": result.thresholds,
    }


def plot(results, path, title):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = list(results)
    fig, axes = plt.subplots(1, len(tasks), figsize=(4 * len(tasks), 3.4),
                             squeeze=False)
    for ax, name in zip(axes[0], tasks):
        runs = results[name]["runs"]
        layers = runs[0]["regression"]["layers"]
        acc = np.array([[r["regression"]["scores"][la]["test"]["accuracy"]
                         for la in layers] for r in runs])
        ax.errorbar(np.arange(1, len(layers) + 1), acc.mean(0),
                    yerr=acc.std(0), marker="o", label="linear probe")
        tl = [r["transfer_learning"]["test_accuracy"] for r in runs]
        ax.axhline(np.mean(tl), color="C1", ls="--",
                   label="transfer learning")
        ax.set_xlabel("conv layer")
        ax.set_title(name)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("test accuracy")
    axes[0][0].legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv=None):
    parser = training.example_argument_parser(
        __doc__.splitlines()[0], dataset="fashion_mnist", epochs=20,
        batch_size=64, output_dir="runs/cross_task/transfer")
    common.add_common_flags(parser)
    parser.add_argument("--head-units", type=int, default=256,
                        help="units of the transfer-learning FC layer")
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    args = parser.parse_args(argv)
    run = training.ExperimentRun.from_args(args)
    model, pool, tasks, partitions = common.load_setup(args)
    base = common.frozen_base(model)
    results = {}
    for name in tasks:
        runs = []
        for i, seed in enumerate(partitions):
            task = common.satellite_task(name, pool, seed,
                                         args.satellite_size)
            if i == 0:
                common.warn_if_small(task)
            keras.utils.set_random_seed(args.seed + seed)
            reg = regression(model, task, args)
            tl = transfer_learning(base, task, args)
            runs.append({"partition": seed, "regression": reg,
                         "transfer_learning": tl,
                         "sizes": [len(task.x_train), len(task.x_val),
                                   len(task.x_test)]})
            ratio = tl["seconds"] / reg["seconds"]
            print(f"{name} partition {seed}: probe {reg['best_layer']} "
                  f"{reg['test_accuracy']:.4f} in {reg['seconds']:.1f}s; "
                  f"transfer learning {tl['test_accuracy']:.4f} in "
                  f"{tl['seconds']:.1f}s ({ratio:.1f}x)", flush=True)
        results[name] = {
            "kind": common.TASK_KIND[name],
            "runs": runs,
            "regression_accuracy": common.summarize(
                [r["regression"]["test_accuracy"] for r in runs]),
            "transfer_accuracy": common.summarize(
                [r["transfer_learning"]["test_accuracy"] for r in runs]),
            "regression_seconds": common.summarize(
                [r["regression"]["seconds"] for r in runs]),
            "transfer_seconds": common.summarize(
                [r["transfer_learning"]["seconds"] for r in runs]),
            "speedup": common.summarize(
                [r["transfer_learning"]["seconds"] / r["regression"]["seconds"]
                 for r in runs]),
        }
    if run.is_chief:
        plot(results, os.path.join(args.output_dir, "per_layer_accuracy.png"),
             f"{model.name}: linear probe per layer vs transfer learning")
    out = run.finish(extra={
        "primary": {"path": args.primary, "name": model.name,
                    "params": model.count_params()},
        "scikit_learn": common.versions()["scikit_learn"],
        "tasks": results}, plot=False)
    for name, r in results.items():
        print(f"{name:>10}: probe {r['regression_accuracy']['mean']:.4f} vs "
              f"TL {r['transfer_accuracy']['mean']:.4f}; "
              f"{r['speedup']['mean']:.1f}x faster")
    return out


if __name__ == "__main__":
    main()
