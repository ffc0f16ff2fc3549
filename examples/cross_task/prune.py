"""Cross-task pruning: characteristic curves, knee points, task networks.

For every satellite task (see `common.py`) and random partition: the lasso
characteristic curve of every convolution of a trained primary network
(`keras_dynfilt.cross_task.characteristic_curve`, 100 lambdas), the knee at
t in {0.1, 0.01, 0.001}, and the task network `prune_for_task` builds
(truncated after the best layer, knee filters kept, compacted by
`keras_dynfilt.pruning.compact`): its size and multiply-adds against the
whole primary network, its test accuracy after the head refit and after a
short fine-tuning, and its CPU inference speed against the full network at
batch 1 and 64 (timed in the same run, interleaved). Writes `results.json`
and the curves as PNGs (paper Figs. 7-10, Tables 2-6).

    python examples/cross_task/prune.py \
        --primary runs/cross_task/vgg/primary.keras \
        --output-dir docs/results/cross_task/prune/vgg
"""

import os
import sys
import time

import keras
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common  # noqa: E402

from keras_dynfilt import cross_task, training  # noqa: E402
from keras_dynfilt.pruning import inference_latency  # noqa: E402

THRESHOLDS = (0.1, 0.01, 0.001)


def lasso_target(task, y):
    if task.kind == "categorical":
        return np.eye(task.num_outputs)[np.asarray(y, int)]
    return np.asarray(y, np.float64)


def evaluate(model, task, batch_size):
    """Test accuracy of a task network's raw outputs (binary: threshold
    chosen on the validation split)."""
    val = model.predict(task.x_val, batch_size=batch_size, verbose=0)
    test = model.predict(task.x_test, batch_size=batch_size, verbose=0)
    threshold = 0.5
    if task.kind == "binary":
        threshold = cross_task.best_threshold(val.ravel(), task.y_val)
    return common.task_accuracy(task, test, task.y_test, threshold)


def fine_tune(pruned, task, args):
    model = pruned.model
    for layer in model.layers:
        # BatchNormalization keeps its statistics (inference mode), as
        # usual when fine-tuning on a small set.
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = False
    if task.kind == "categorical":
        loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    else:
        loss = keras.losses.MeanSquaredError()
    model.compile(keras.optimizers.Adam(args.finetune_learning_rate), loss)
    start = time.perf_counter()
    model.fit(task.x_train, task.y_train, batch_size=args.batch_size,
              epochs=args.finetune_epochs,
              steps_per_epoch=args.steps_per_epoch, verbose=0)
    seconds = time.perf_counter() - start
    return evaluate(model, task, args.batch_size), seconds


def inference_speed(full, small, x, repeats):
    """Median seconds per batch of the full and the pruned model."""
    out = {}
    for batch in (1, 64):
        full_s, pruned_s = inference_latency(
            [full, small], x[:batch], repeats=repeats,
            calls=20 if batch == 1 else 3)
        out[f"batch_{batch}"] = {
            "full_seconds": full_s, "pruned_seconds": pruned_s,
            "speedup": full_s / pruned_s,
        }
    return out


def one_partition(model, task, args, plot_path=None):
    start = time.perf_counter()
    acts = {
        split: cross_task.pooled_activations(
            model, (getattr(task, f"x_{split}"), getattr(task, f"y_{split}")),
            batch_size=args.batch_size)
        for split in ("train", "val")
    }
    curves = {
        name: cross_task.characteristic_curve(
            acts["train"].features[name], lasso_target(task, task.y_train),
            acts["val"].features[name], lasso_target(task, task.y_val),
            n_lambdas=args.n_lambdas, name=name)
        for name in acts["train"].features
    }
    curve_seconds = time.perf_counter() - start
    if plot_path:
        cross_task.plot_characteristic_curves(
            curves, plot_path, knees=THRESHOLDS,
            title=f"{model.name}: {task.name} (validation RMSE)")
    probe = cross_task.linear_transfer(acts["train"], acts["val"], task.kind,
                                       bins=task.bins)
    refit_y = task.y_train.astype(int) if task.kind == "categorical" \
        else task.y_train
    kind = "categorical" if task.kind == "categorical" else "continuous"
    out = {
        "sizes": [len(task.x_train), len(task.x_val), len(task.x_test)],
        "curve_seconds": curve_seconds,
        "curves": {n: c.as_dict() for n, c in curves.items()},
        "probe_best_layer": probe.best_layer,
        "thresholds": {},
    }
    keep_for_speed = None
    for t in THRESHOLDS:
        start = time.perf_counter()
        pruned = cross_task.prune_for_task(
            model, curves, threshold=t, task=kind,
            refit=(task.x_train, refit_y))
        seconds = time.perf_counter() - start
        record = pruned.as_dict()
        record["prune_seconds"] = seconds
        record["table"] = pruned.table()
        record["test_accuracy_refit"] = evaluate(pruned.model, task,
                                                 args.batch_size)
        if t == 0.01:
            path = os.path.join(args.output_dir, f"{task.name}_t0.01.keras")
            pruned.model.save(path)
            reloaded = keras.saving.load_model(path, safe_mode=True)
            record["keras_round_trip_max_diff"] = float(np.abs(
                reloaded.predict(task.x_test[:32], verbose=0)
                - pruned.model.predict(task.x_test[:32], verbose=0)).max())
            os.remove(path)
            keep_for_speed = pruned.model
            acc, ft_seconds = fine_tune(pruned, task, args)
            record["test_accuracy_finetuned"] = acc
            record["finetune_seconds"] = ft_seconds
            record["finetune_epochs"] = args.finetune_epochs
        out["thresholds"][str(t)] = record
        print(f"  t={t:g}: best {pruned.best_layer}, "
              f"{100 * pruned.size_reduction:.2f}% smaller, "
              f"{100 * pruned.macs_reduction:.2f}% fewer MACs, accuracy "
              f"{record['test_accuracy_refit']:.4f}"
              + (f" -> {record['test_accuracy_finetuned']:.4f} fine-tuned"
                 if t == 0.01 else ""), flush=True)
    return out, keep_for_speed


def main(argv=None):
    parser = training.example_argument_parser(
        __doc__.splitlines()[0], dataset="fashion_mnist", epochs=1,
        batch_size=64, output_dir="runs/cross_task/prune")
    common.add_common_flags(parser)
    parser.add_argument("--n-lambdas", type=int, default=100)
    parser.add_argument("--finetune-epochs", type=int, default=2)
    parser.add_argument("--finetune-learning-rate", type=float, default=1e-4)
    parser.add_argument("--speed-repeats", type=int, default=15)
    args = parser.parse_args(argv)
    run = training.ExperimentRun.from_args(args)
    model, pool, tasks, partitions = common.load_setup(args)
    results = {}
    for name in tasks:
        runs, speed = [], None
        for i, seed in enumerate(partitions):
            task = common.satellite_task(name, pool, seed,
                                         args.satellite_size)
            keras.utils.set_random_seed(args.seed + seed)
            print(f"{name} partition {seed}", flush=True)
            if i == 0:
                common.warn_if_small(task)
            plot_path = os.path.join(args.output_dir, f"curves_{name}.png") \
                if i == 0 and run.is_chief else None
            record, small = one_partition(model, task, args, plot_path)
            record["partition"] = seed
            runs.append(record)
            if i == 0:
                speed = inference_speed(model, small, task.x_test,
                                        args.speed_repeats)
                print(f"  speed-up batch 1: "
                      f"{speed['batch_1']['speedup']:.2f}x, batch 64: "
                      f"{speed['batch_64']['speedup']:.2f}x", flush=True)
        summary = {}
        for t in THRESHOLDS:
            rs = [r["thresholds"][str(t)] for r in runs]
            summary[str(t)] = {
                key: common.summarize([r.get(key) for r in rs])
                for key in ("size_reduction", "macs_reduction",
                            "test_accuracy_refit", "test_accuracy_finetuned")
            }
            summary[str(t)]["best_layers"] = [r["best_layer"] for r in rs]
        results[name] = {"kind": common.TASK_KIND[name], "runs": runs,
                         "summary": summary, "inference_speed": speed}
    out = run.finish(extra={
        "primary": {"path": args.primary, "name": model.name,
                    "params": model.count_params()},
        "scikit_learn": common.versions()["scikit_learn"],
        "tasks": results}, plot=False)
    for name, r in results.items():
        s = r["summary"]["0.01"]
        print(f"{name:>10} t=0.01: {100 * s['size_reduction']['mean']:.2f}% "
              f"smaller, {100 * s['macs_reduction']['mean']:.2f}% fewer MACs,"
              f" accuracy {s['test_accuracy_refit']['mean']:.4f}")
    return out


if __name__ == "__main__":
    main()
