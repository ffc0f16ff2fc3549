"""Engine speed at scale: every stage as a ratio to `keras.models.clone_model`.

For each keras.applications model (`weights=None`, 32x32 inputs or the
model's minimum input size, 10 classes), the run times, in one process and
interleaved so that every stage sees the same machine load:

- `clone`: `keras.models.clone_model(model)`, the baseline (ratio 1): Keras
  rebuilding the same model from its graph, weights initialised anew;
- `groups`: `keras_dynfilt.pruning.filter_groups(model)` (the analysis);
- `mask`: masking every group, removing the 30% lowest-L2 units of each,
  in one `apply_group_masks({group: keep, ...})` call (one assignment per
  weight; versions without it call `apply_group_mask` once per group);
  the ranking itself, `FilterGroup.filter_weights` and the norms, is
  timed apart as `rank`;
- `cost`: `model_cost(model, masks=...)`, pricing that mask without
  compacting, when the installed version has the `masks` argument (else
  the column stays empty); `cost_compacted` is `model_cost(model,
  compacted=True)`, which prices the zeroed units;
- `compact`: `keras_dynfilt.pruning.compact(model)` of the masked model.

Each stage runs `--repeats` times (a fresh `filter_groups` each repeat, so
the masking also computes its targets anew), and more on a small model,
until the clones have taken `--min-seconds` in all (at most
`--max-repeats`): a 0.3 s clone is moved by a fraction of a second of
load. The table reports the median of the per-repeat ratios to that
repeat's clone: on a shared machine absolute times move with the load,
ratios much less.

Each model is measured in a fresh Python process of its own (`--isolate`,
the default when more than one model is measured; `--no-isolate` measures
them all in this process). The ratios are still taken within one process
(the model's); what isolation removes is the drift of a long process: in
a run of all 40 models in one process (commit b9acd06) InceptionResNetV2's
`model_cost(masks)` took 0.28-0.55 s after 31 other models, 0.08-0.14 s
in a fresh process, and which model runs late decided which ratios move.
Each row records the load average before and after it (`load`).

Peak memory: the resident set size (RSS) high-water mark of the process,
reset through `/proc/self/clear_refs` right before `clone_model` and before
`compact` and read from `/proc/self/status` (`VmHWM`) right after. RSS,
not `tracemalloc`: the weights live in the backend's own allocator
(TensorFlow's, XLA's), which `tracemalloc` does not see, and the high-water
mark costs nothing while the stage runs (no sampling thread competing for
the interpreter lock); freed heap memory is handed back to the system
(`malloc_trim`) first, so that less of an earlier stage's freed memory
hides this one's growth. `peak_ratio` is (model + peak growth during
`compact`) / (model + peak growth during `clone_model`), the model counted
as the bytes of its weights, each growth the largest over the repeats
and the clone's at least the weights' bytes (a clone copies them; a lower
reading means memory freed by an earlier stage was reused); the target
is 2. Linux only; elsewhere the memory columns are empty.

    nice -n 10 python benchmarks/engine_scale.py \\
        --output docs/results/pruning/engine_scale.json \\
        --plot docs/results/pruning/engine_scale.png
    python benchmarks/engine_scale.py --models MobileNetV2 ResNet50
    python benchmarks/engine_scale.py --plot-only \\
        --output docs/results/pruning/engine_scale.json \\
        --plot docs/results/pruning/engine_scale.png

The JSON is rewritten after every model, so an interrupted run keeps the
finished ones; `--skip-done` resumes it.
"""

import argparse
import ctypes
import gc
import inspect
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time
import traceback

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from keras_dynfilt import pruning  # noqa: E402

# Architectures with a larger minimum input size than 32x32.
MIN_INPUT = {"InceptionV3": 75, "InceptionResNetV2": 75, "Xception": 71}
STAGES = ("clone", "groups", "mask", "cost", "compact")
TARGETS = {"groups": 0.5, "mask": 0.5, "cost": 0.1, "compact": 2.0}
PEAK_TARGET = 2.0


# Roughly by parameter count (small first), so that an interrupted run of
# all of them has covered as many as possible.
SIZE_ORDER = (
    "MobileNetV3Small", "MobileNetV2", "MobileNet", "EfficientNetB0",
    "MobileNetV3Large", "NASNetMobile", "EfficientNetV2B0", "EfficientNetB1",
    "DenseNet121", "EfficientNetV2B1", "EfficientNetB2", "EfficientNetV2B2",
    "EfficientNetB3", "EfficientNetV2B3", "DenseNet169", "VGG16", "VGG19",
    "EfficientNetB4", "DenseNet201", "EfficientNetV2S", "Xception",
    "InceptionV3", "ResNet50", "ResNet50V2", "ConvNeXtTiny", "EfficientNetB5",
    "ResNet101", "ResNet101V2", "EfficientNetB6", "ConvNeXtSmall",
    "EfficientNetV2M", "InceptionResNetV2", "ResNet152", "ResNet152V2",
    "EfficientNetB7", "NASNetLarge", "ConvNeXtBase", "EfficientNetV2L",
    "ConvNeXtLarge", "ConvNeXtXLarge",
)


def applications():
    names = [
        name for name, fn in inspect.getmembers(keras.applications)
        if callable(fn) and name[:1].isupper()
    ]
    rank = {name: i for i, name in enumerate(SIZE_ORDER)}
    return sorted(names, key=lambda n: (rank.get(n, len(rank)), n))


def build(name, size):
    fn = getattr(keras.applications, name)
    return fn(weights=None, input_shape=(size, size, 3), classes=10)


def _load():
    """The 1-minute load average, or None where the OS has none."""
    try:
        return os.getloadavg()[0]
    except (OSError, AttributeError):
        return None


def isolated(name, args):
    """`measure(name, ...)` in a fresh Python process: its row."""
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        output = os.path.join(folder, "row.json")
        command = [
            sys.executable, os.path.abspath(__file__), "--no-isolate",
            "--models", name, "--size", str(args.size),
            "--rate", str(args.rate), "--repeats", str(args.repeats),
            "--min-seconds", str(args.min_seconds),
            "--max-repeats", str(args.max_repeats), "--output", output,
        ]
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0 or not os.path.exists(output):
            return {"model": name,
                    "error": f"subprocess exited {done.returncode}",
                    "traceback": (done.stderr or "")[-2000:]}
        with open(output) as f:
            return json.load(f)["models"][0]


def _kib(field):
    try:
        with open("/proc/self/status") as f:
            found = re.search(rf"{field}:\s+(\d+) kB", f.read())
    except OSError:
        return None
    return int(found.group(1)) if found else None


def _trim():
    """Returns freed heap memory to the system (glibc), so that the next
    stage's growth is not hidden by reuse of what an earlier stage freed."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _reset_peak():
    """Resets the RSS high-water mark; the RSS now (bytes) or None."""
    gc.collect()
    _trim()
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return None
    rss = _kib("VmRSS")
    return None if rss is None else rss * 1024


def _peak_growth(start):
    peak = _kib("VmHWM")
    if start is None or peak is None:
        return None
    return max(peak * 1024 - start, 0)


def lowest_l2_keeps(groups, rate):
    """Keep arrays removing `floor(rate * N)` lowest-L2 units per group."""
    keeps = []
    for group in groups:
        n = min(group.size - 1, int(group.size * rate))
        norms = (np.linalg.norm(group.filter_weights(), axis=1) if n > 0
                 else np.zeros(group.size))
        keeps.append(pruning.criteria.lowest(norms, n))
    return keeps


def timed(fn, *args, **kwargs):
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    return time.perf_counter() - start, result


def mask_all(groups, keeps):
    if hasattr(pruning, "apply_group_masks"):  # one assignment per weight
        pruning.apply_group_masks(dict(zip(groups, keeps)))
        return
    for group, keep in zip(groups, keeps):  # versions before it
        if not keep.all():
            pruning.apply_group_mask(group, keep)


def measure(name, size, rate, repeats, min_seconds=0.0, max_repeats=None):
    row = {"model": name, "input": size, "load": [_load()]}
    keras.backend.clear_session()
    gc.collect()
    model = build(name, size)
    row["layers"] = len(model.layers)
    row["weights"] = len(model.weights)
    row["weight_bytes"] = int(sum(
        int(np.prod(w.shape)) * np.dtype(w.dtype).itemsize
        for w in model.weights
    ))
    has_masks = "masks" in inspect.signature(pruning.model_cost).parameters
    runs = {stage: [] for stage in STAGES + ("rank", "cost_compacted")}
    memory = {"clone": [], "compact": []}
    keeps = None
    max_repeats = max(repeats, max_repeats or repeats)
    while len(runs["clone"]) < repeats or (
        sum(runs["clone"]) < min_seconds and len(runs["clone"]) < max_repeats
    ):
        start = _reset_peak()
        seconds, clone = timed(keras.models.clone_model, model)
        memory["clone"].append(_peak_growth(start))
        runs["clone"].append(seconds)
        del clone
        seconds, groups = timed(
            pruning.filter_groups, model, warn=False
        )
        runs["groups"].append(seconds)
        if keeps is None:  # rank once: the same units are removed each time
            seconds, keeps = timed(lowest_l2_keeps, groups, rate)
            runs["rank"].append(seconds)
            row["groups"] = len(groups)
            row["units"] = int(sum(g.size for g in groups))
            row["units_removed"] = int(sum((~k).sum() for k in keeps))

        seconds, _ = timed(mask_all, groups, keeps)
        runs["mask"].append(seconds)
        if has_masks:
            masks = {g: k for g, k in zip(groups, keeps)}
            seconds, cost = timed(
                pruning.model_cost, model, masks=masks, warn=False
            )
            runs["cost"].append(seconds)
            row["macs_masked"] = int(cost.macs)
        seconds, priced = timed(
            pruning.model_cost, model, compacted=True, warn=False
        )
        runs["cost_compacted"].append(seconds)
        start = _reset_peak()
        seconds, small = timed(pruning.compact, model)
        memory["compact"].append(_peak_growth(start))
        runs["compact"].append(seconds)
        row["macs_compacted"] = int(priced.macs)
        row["params_compacted"] = int(small.count_params())
        del small, groups
    row["load"].append(_load())
    row["repeats"] = len(runs["clone"])
    row["seconds"] = {k: v for k, v in runs.items() if v}
    row["ratio"] = {}
    for stage, times in runs.items():
        if stage == "clone" or not times:
            continue
        clones = runs["clone"][-len(times):]
        row["ratio"][stage] = statistics.median(
            t / c for t, c in zip(times, clones)
        )
    if all(m is not None for m in memory["clone"] + memory["compact"]):
        row["peak_bytes"] = memory
        # The largest reading of each: memory an earlier repeat freed and the
        # allocator kept can only lower a reading, never raise it.
        clone_peak = max(memory["clone"])
        compact_peak = max(memory["compact"])
        model_bytes = row["weight_bytes"]
        # A clone holds at least a copy of the weights; a lower reading is
        # memory freed earlier and reused, which the high-water mark misses.
        row["peak_ratio"] = (model_bytes + compact_peak) / (
            model_bytes + max(clone_peak, model_bytes)
        )
    row["meets_targets"] = all(
        row["ratio"].get(stage, 0) <= target
        for stage, target in TARGETS.items()
    ) and row.get("peak_ratio", 0) <= PEAK_TARGET
    return row


def fmt(value, digits=2):
    return "-" if value is None else f"{value:.{digits}f}"


def table(rows):
    header = (
        "| model | layers | clone (s) | filter_groups | mask every group "
        "| model_cost(masks) | compact | peak memory |"
    )
    lines = [header, "|---|---|---|---|---|---|---|---|"]
    for row in rows:
        if "error" in row:
            lines.append(f"| {row['model']} | error: {row['error'][:80]} |")
            continue
        ratio = row["ratio"]
        clone = statistics.median(row["seconds"]["clone"])
        lines.append(
            f"| {row['model']} | {row['layers']} | {clone:.2f} | "
            f"{fmt(ratio.get('groups'))} | {fmt(ratio.get('mask'))} | "
            f"{fmt(ratio.get('cost'), 3)} | {fmt(ratio.get('compact'))} | "
            f"{fmt(row.get('peak_ratio'))} |"
        )
    return "\n".join(lines)


def plot(rows, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in rows if "error" not in r]
    labels = {
        "clone": "clone_model (baseline)", "groups": "filter_groups",
        "mask": "apply_group_masks, every group",
        "cost": "model_cost(masks=...)", "compact": "compact",
    }
    fig, (ax, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    for stage, marker in zip(STAGES, "osD^v"):
        points = [
            (r["layers"], statistics.median(r["seconds"][stage]),
             r["ratio"].get(stage, 1.0))
            for r in rows if r["seconds"].get(stage)
        ]
        if not points:
            continue
        x, y, ratio = np.array(points, float).T
        label = labels[stage]
        if len(points) >= 3:
            slope = np.polyfit(np.log(x), np.log(y), 1)[0]
            label += f" (slope {slope:.2f})"
        ax.scatter(x, y, marker=marker, s=18, label=label)
        right.scatter(x, ratio, marker=marker, s=18, label=labels[stage])
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("layers (keras.applications model)")
    ax.set_ylabel("seconds (median of repeats)")
    ax.set_title("Time (log-log; slope 1 = linear)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    right.set_xscale("log")
    right.set_xlabel("layers (keras.applications model)")
    right.set_ylabel("ratio to clone_model (median of repeats)")
    right.set_title("Ratio to clone_model: flat = grows like clone_model")
    right.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def sfp_overhead(epochs, steps, batch_size, seed):
    """Time of `SoftFilterPruning`'s own hooks per epoch of ResNet-56 on
    Fashion-MNIST, next to the epoch's time.

    An epoch of `steps` batches of the training split (the callback's work
    per epoch does not depend on the epoch's length, except a per-batch
    hook, timed apart); the full epoch (60,000 images) is projected from
    the measured time per training step.
    """
    from keras_dynfilt.callbacks import SoftFilterPruning
    from keras_dynfilt.models import resnet_cifar
    from keras_dynfilt.training.datasets import load_image_data

    keras.utils.set_random_seed(seed)
    data = load_image_data(
        "fashion_mnist", batch_size, seed=seed, limit_train=steps * batch_size
    )
    model = resnet_cifar(56, 10, input_shape=(28, 28, 1))
    model.compile(
        keras.optimizers.SGD(0.1, momentum=0.9),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    sfp = SoftFilterPruning(pruning_rate=0.3)
    spent = {"epoch": [], "batch": []}
    epoch_hooks = ("on_train_begin", "on_epoch_begin", "on_epoch_end",
                   "on_test_begin", "on_train_end")
    state = {"hooks": 0.0, "batch": 0.0, "batches": 0}

    def wrap(name):
        original = getattr(sfp, name)

        def hook(*args, **kwargs):
            start = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                seconds = time.perf_counter() - start
                if name == "on_train_batch_end":
                    state["batch"] += seconds
                    state["batches"] += 1
                else:
                    state["hooks"] += seconds

        setattr(sfp, name, hook)

    for name in epoch_hooks + ("on_train_batch_end",):
        wrap(name)
    epochs_seen, flops = [], []

    class Clock(keras.callbacks.Callback):
        """First and last in the list: brackets every epoch."""

        def __init__(self, first):
            super().__init__()
            self.first = first

        def on_epoch_begin(self, epoch, logs=None):
            if self.first:
                state["start"] = time.perf_counter()
                if epoch == 0:  # on_train_begin's work counts in epoch 0
                    state["start"] = state["fit_start"]

        def on_train_begin(self, logs=None):
            if self.first:
                state["fit_start"] = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            if self.first:
                return
            epochs_seen.append(time.perf_counter() - state["start"])
            flops.append((logs or {}).get("flops_fraction"))
            spent["epoch"].append(state["hooks"])
            spent["batch"].append(state["batch"])
            state["hooks"] = state["batch"] = 0.0

    model.fit(
        data.train, epochs=epochs, verbose=0,
        callbacks=[Clock(True), sfp, Clock(False)],
    )
    rows = []
    for epoch, (seconds, hooks, batch, fraction) in enumerate(
        zip(epochs_seen, spent["epoch"], spent["batch"], flops)
    ):
        rows.append({
            "epoch": epoch, "epoch_s": seconds, "callback_s": hooks + batch,
            "callback_fraction": (hooks + batch) / seconds,
            "flops_fraction": fraction,
        })
    later = rows[1:] or rows  # epoch 0 also traces and compiles the step
    step_s = statistics.median(
        (r["epoch_s"] - r["callback_s"]) / steps for r in later
    )
    per_batch = sum(spent["batch"]) / max(state["batches"], 1)
    hooks = statistics.median(r["callback_s"] - per_batch * steps
                              for r in later)
    full_steps = -(-60000 // batch_size)
    full = full_steps * (step_s + per_batch) + hooks
    return {
        "model": "ResNet-56 (A), Fashion-MNIST 28x28", "epochs": rows,
        "steps_per_epoch": steps, "batch_size": batch_size,
        "step_s": step_s, "per_batch_hook_s": per_batch,
        "per_epoch_hooks_s": hooks,
        "projected_full_epoch_s": full,
        "projected_callback_fraction": (hooks + per_batch * full_steps)
        / full,
    }


def commit():
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True,
            text=True, check=True,
            cwd=os.path.dirname(os.path.abspath(__file__)),
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="*", default=None,
                        help="keras.applications names (default: all)")
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--rate", type=float, default=0.3)
    parser.add_argument("--repeats", type=int, default=3,
                        help="repeats of every stage (at least)")
    parser.add_argument("--min-seconds", type=float, default=3.0,
                        help="repeat until the clones took this long in all")
    parser.add_argument("--max-repeats", type=int, default=9,
                        help="the most repeats --min-seconds may ask for")
    parser.add_argument("--isolate", action=argparse.BooleanOptionalAction,
                        default=None,
                        help="each model in a fresh process (default: when "
                        "more than one model is measured)")
    parser.add_argument("--output", default="engine_scale.json")
    parser.add_argument("--plot", default=None, help="PNG path for the plot")
    parser.add_argument("--plot-only", action="store_true",
                        help="only redraw the plot and table from --output")
    parser.add_argument("--skip-done", action="store_true",
                        help="keep the models already in --output")
    parser.add_argument("--sfp", action="store_true",
                        help="time SoftFilterPruning on ResNet-56 instead")
    parser.add_argument("--sfp-epochs", type=int, default=4)
    parser.add_argument("--sfp-steps", type=int, default=40)
    parser.add_argument("--sfp-batch", type=int, default=128)
    args = parser.parse_args()
    if args.sfp:
        result = sfp_overhead(args.sfp_epochs, args.sfp_steps,
                              args.sfp_batch, seed=0)
        result["arguments"] = vars(args)
        result["versions"] = {"keras": keras.__version__,
                              "backend": keras.backend.backend(),
                              "commit": commit(), "cpus": os.cpu_count()}
        for row in result["epochs"]:
            print(f"epoch {row['epoch']}: {row['epoch_s']:.1f} s, callback "
                  f"{row['callback_s']:.3f} s "
                  f"({100 * row['callback_fraction']:.2f}%)")
        print(f"projected full epoch: {result['projected_full_epoch_s']:.0f}"
              f" s, callback {100 * result['projected_callback_fraction']:.2f}"
              "% of it (target <= 5%)")
        with open(args.output, "w") as f:
            json.dump(result, f, indent=1)
        return
    if args.plot_only:
        with open(args.output) as f:
            results = json.load(f)
        print(table(results["models"]))
        if args.plot:
            plot(results["models"], args.plot)
        return
    names = args.models or applications()
    results = {
        "arguments": vars(args),
        "versions": {
            "keras": keras.__version__, "backend": keras.backend.backend(),
            "python": platform.python_version(), "commit": commit(),
            "cpus": os.cpu_count(),
        },
        "models": [],
    }
    if args.skip_done and os.path.exists(args.output):
        with open(args.output) as f:
            results["models"] = [
                r for r in json.load(f)["models"] if "error" not in r
            ]
        done = {r["model"] for r in results["models"]}
        names = [n for n in names if n not in done]
    isolate = args.isolate
    if isolate is None:
        isolate = len(names) > 1
    results["arguments"]["isolate"] = isolate
    for name in names:
        size = max(args.size, MIN_INPUT.get(name, 0))
        try:
            if isolate:
                row = isolated(name, args)
            else:
                row = measure(name, size, args.rate, args.repeats,
                              args.min_seconds, args.max_repeats)
        except Exception as e:  # noqa: BLE001 - reported, not swallowed
            row = {"model": name, "input": size,
                   "error": f"{type(e).__name__}: {e}"[:500],
                   "traceback": traceback.format_exc()[-2000:]}
        row["finished"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        results["models"].append(row)
        print(table([row]).splitlines()[-1], flush=True)
        with open(args.output, "w") as f:
            json.dump(results, f, indent=1)
        if args.plot:
            plot(results["models"], args.plot)
    rows = results["models"]
    print(table(rows))
    met = [r["model"] for r in rows if r.get("meets_targets")]
    print(f"{len(met)} of {len(rows)} models meet every target "
          f"(ratios {TARGETS}, peak memory <= {PEAK_TARGET}).")


if __name__ == "__main__":
    main()
