"""The library in one run: train a LightCNN under Soft Filter Pruning, compact
it, and compare the full-size and the compacted model.

Trains a width-scaled LightCNN-9 (`keras_dynfilt.models.light_cnn`, built
from `keras_dynfilt.layers.MFM`) on Fashion-MNIST read from local files
(Debian's `dataset-fashion-mnist`; scikit-learn's 8x8 digits when that
package is absent) with `keras_dynfilt.callbacks.SoftFilterPruning`, compacts
it with `keras_dynfilt.pruning.compact` into a physically smaller Keras model
and prints a before/after table: test accuracy, parameters, multiply-adds
and CPU latency at batch 1 and 64 (timed interleaved in the same run). Saves
the small model (`compact.keras`, loads with `safe_mode=True`),
`results.json` and `demo.png` (learning curves and cost per layer).

    python examples/demo/prune_lightcnn.py             # = make demo
    python examples/demo/prune_lightcnn.py --pruning-rate 0.5 --epochs 8
"""

import os

import keras
import numpy as np

import keras_dynfilt
from keras_dynfilt import training
from keras_dynfilt.pruning import inference_latency, model_cost


def plot(history, full_cost, small_cost, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (curves, cost) = plt.subplots(1, 2, figsize=(13, 4))
    epochs = np.arange(1, len(history["accuracy"]) + 1)
    curves.plot(epochs, history["accuracy"], "o-", label="train accuracy")
    curves.plot(epochs, history["val_accuracy"], "o-", label="test accuracy")
    if "sparsity" in history:
        curves.plot(epochs, history["sparsity"], "s--", label="sparsity")
    curves.set_xlabel("epoch")
    curves.set_ylim(0, 1)
    curves.set_title("training under SoftFilterPruning", fontsize=10)
    curves.grid(alpha=0.3)
    curves.legend(fontsize=8)

    small = {c.name: c.macs for c in small_cost.layers}
    rows = [c for c in full_cost.layers if c.macs]
    idx = np.arange(len(rows))
    cost.bar(idx - 0.2, [c.macs / 1e6 for c in rows], 0.4, label="full size")
    cost.bar(
        idx + 0.2,
        [(small.get(c.name) or 0) / 1e6 for c in rows],
        0.4,
        label="compacted",
    )
    cost.set_xticks(idx, [c.name for c in rows], rotation=60, fontsize=7,
                    ha="right")
    cost.set_ylabel("million multiply-adds per image")
    cost.set_title("cost per layer", fontsize=10)
    cost.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None):
    parser = training.example_argument_parser(
        __doc__.splitlines()[0],
        dataset="auto",
        epochs=5,
        batch_size=128,
        output_dir="runs/demo",
    )
    parser.add_argument("--width-multiplier", type=float, default=0.25)
    parser.add_argument("--pruning-rate", type=float, default=0.4)
    parser.add_argument("--criterion", default="l2")
    parser.add_argument("--learning-rate", type=float, default=2e-3)
    parser.add_argument(
        "--timing-repeats", type=int, default=30, help="latency repeats"
    )
    args = parser.parse_args(argv)

    run = training.ExperimentRun.from_args(args)
    data = run.load_data()
    print(
        f"dataset {data.name} ({data.source}): {data.num_train} train / "
        f"{data.num_test} test"
    )
    with run.strategy.scope():
        model = keras_dynfilt.models.light_cnn(
            data.input_shape,
            data.num_classes,
            width_multiplier=args.width_multiplier,
        )
        run.compile(
            model,
            optimizer=keras.optimizers.Adam(args.learning_rate),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=["accuracy"],
        )
    sfp = keras_dynfilt.callbacks.SoftFilterPruning(
        args.pruning_rate, criterion=args.criterion
    )
    history = model.fit(
        data.train,
        shuffle=False,  # the pipeline shuffles; Keras would warn
        epochs=args.epochs,
        steps_per_epoch=args.steps_per_epoch,
        validation_data=data.test,
        callbacks=run.callbacks([sfp]),
        verbose=args.verbose,
    )

    small = sfp.compact_model()
    # Saved before `compile`: the file holds the model, not an optimizer.
    os.makedirs(args.output_dir, exist_ok=True)
    small_path = os.path.join(args.output_dir, "compact.keras")
    small.save(small_path)
    reloaded = keras.saving.load_model(small_path, safe_mode=True)
    small.compile(
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    print("evaluating the full-size and the compacted model on the test "
          "split...", flush=True)
    full_metrics = model.evaluate(data.test, return_dict=True, verbose=0)
    small_metrics = small.evaluate(data.test, return_dict=True, verbose=0)
    full_cost, small_cost = model_cost(model), model_cost(small)

    x = keras.ops.convert_to_numpy(next(iter(data.test))[0])
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(reloaded(x[:8], training=False)),
        keras.ops.convert_to_numpy(small(x[:8], training=False)),
        rtol=1e-5,
        atol=1e-5,
    )
    sizes = {1: x[:1], 64: np.concatenate([x] * (64 // len(x) + 1))[:64]}
    print(f"timing both models at batch 1 and 64 ({args.timing_repeats} "
          "repeats)...", flush=True)
    seconds = {
        b: inference_latency([model, small], xb, repeats=args.timing_repeats)
        for b, xb in sizes.items()
    }

    rows = {
        "test accuracy": (full_metrics["accuracy"], small_metrics["accuracy"]),
        "parameters": (full_cost.params, small_cost.params),
        "multiply-adds / image": (full_cost.macs, small_cost.macs),
        **{
            f"CPU latency, batch {b} (ms)": (1e3 * s[0], 1e3 * s[1])
            for b, s in seconds.items()
        },
    }
    print(
        f"\nLightCNN-9 (width {args.width_multiplier}) on {data.name}, "
        f"{args.epochs} epochs, SoftFilterPruning({args.pruning_rate}, "
        f"{args.criterion!r}), seed {args.seed}:"
    )
    print(f"{'':28}{'full size':>14}{'compacted':>14}{'change':>10}")
    for name, (before, after) in rows.items():
        if name == "test accuracy":
            change = f"{100 * (after - before):+.2f} pt"
            cells = f"{before:>14.4f}{after:>14.4f}"
        elif "latency" in name:
            change = f"{before / after:.2f}x"
            cells = f"{before:>14.2f}{after:>14.2f}"
        else:
            change = f"{100 * (after / before - 1):+.1f}%"
            cells = f"{before:>14,}{after:>14,}"
        print(f"{name:28}{cells}{change:>10}")

    results = run.finish(
        history,
        small_metrics,
        extra={
            "full": {
                "test": full_metrics,
                "cost": {"params": full_cost.params, "macs": full_cost.macs},
            },
            "compacted": {
                "test": small_metrics,
                "cost": {"params": small_cost.params, "macs": small_cost.macs},
                "path": small_path,
            },
            "latency_seconds": {
                str(b): {"full": s[0], "compacted": s[1]}
                for b, s in seconds.items()
            },
        },
        plot=False,
    )
    plot(
        results["history"],
        full_cost,
        small_cost,
        os.path.join(args.output_dir, "demo.png"),
    )
    print(
        f"\nsaved {small_path} (loads with safe_mode=True), results.json and "
        f"demo.png in {args.output_dir} ({results['wall_seconds']:.0f}s)"
    )
    return results


if __name__ == "__main__":
    main()
