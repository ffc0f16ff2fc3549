"""The one-call pruner's own time: `prune(model, target_macs=0.5)`.

On the side-by-side network (`keras_dynfilt.models.resnet_cifar(20,
shortcut="B")`, 28x28x1 Fashion-MNIST inputs, 10 classes) the run times,
in one process and interleaved so that every measure sees the same load:

- `clone`: `keras.models.clone_model(model)` plus `set_weights`, the
  baseline (ratio 1): Keras rebuilding the same model from its graph;
- `prune`: `keras_dynfilt.pruning.prune(model, target_macs=0.5, ...)`
  for group-L2 local, group-L2 global and Taylor (the first 8 batches of
  128 real Fashion-MNIST training images of `side_by_side_common`'s
  epoch-0 order, seed 0): the whole call (grouping, scores, Taylor
  gradients, the MACs-target search, masking, compaction, pricing the
  result);
- `prune_before`: the same call as the pruner did it before its search
  got a `_MaskPricer` and Taylor a compiled gradient: every search
  candidate priced by `model_cost(model, masks=...)`, the Taylor
  gradients eager (`same_widths` says whether both planned the same
  widths).

Each measure runs `--repeats` times on a fresh copy of one set of weights;
the table gives medians and the median of the per-repeat ratios to that
repeat's clone (on a shared machine absolute times move with the load,
ratios much less).

With `--torch PYTHON` (an interpreter with torch 2.13 CPU and
torch-pruning 1.6.1, e.g. `.venv-torch/bin/python`), a subprocess times
Torch-Pruning on its twin (`side_by_side_torch.ResNetCifar(20)`, one
thread, the same Taylor batches): `copy.deepcopy(model)` as its baseline,
one `BasePruner` build + `step()` at the ratio that halves MACs (the
call), and the bisection over `pruning_ratio` that finds it
(`side_by_side_torch.find_ratio`: Torch-Pruning takes a channel ratio, not
a MACs target), in the same run and under the same load.

    python benchmarks/prune_call_speed.py --repeats 5 \\
        --torch /path/to/.venv-torch/bin/python \\
        --output docs/results/pruning/prune_call_speed.json
"""

import argparse
import importlib.metadata
import json
import os
import platform
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import side_by_side_common as common  # noqa: E402
from engine_scale import commit  # noqa: E402  (one git-commit reader)

METHODS = {
    "l2_local": {"criterion": "l2", "scope": "local"},
    "l2_global": {"criterion": "l2", "scope": "global"},
    "taylor": {"criterion": "taylor", "scope": "local"},
}
TARGET = 0.5
BATCH = common.RECIPE["batch_size"]
TAYLOR_BATCHES = common.RECIPE["taylor_batches"]


def taylor_data(limit):
    """The Taylor batches of seed 0 (the side-by-side's)."""
    x, y, _, _ = common.load_fashion_mnist()
    if limit:
        x, y = x[:limit], y[:limit]
    return common.taylor_batches(x, y, 0, BATCH, TAYLOR_BATCHES)




# -- Keras ------------------------------------------------------------------
def keras_run(args, data):
    import keras

    import keras_dynfilt
    from keras_dynfilt.pruning import Pruner, _gradients, criteria, prune

    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(args.threads)

    def build():
        return keras_dynfilt.models.resnet_cifar(
            args.depth, num_classes=10, input_shape=(28, 28, 1),
            shortcut="B",
        )

    keras.utils.set_random_seed(0)
    weights = build().get_weights()

    def fresh(method):
        model = build()
        model.set_weights(weights)
        if method == "taylor":
            model.compile(
                optimizer="sgd",
                loss=keras.losses.SparseCategoricalCrossentropy(
                    from_logits=True
                ),
            )
        return model

    def clone():
        model = fresh("l2_local")
        start = time.perf_counter()
        copy = keras.models.clone_model(model)
        copy.set_weights(model.get_weights())
        return time.perf_counter() - start

    fast_plan, fast_gradients = Pruner._plan_counts, criteria.gradient_function

    def model_cost_search(self, groups, scores, fraction):
        return self._plan_step(groups, scores, fraction)

    def eager_gradients(model):
        return lambda x, y: _gradients.loss_gradients(model, x, y)

    def call(method, slow):
        model = fresh(method)
        kwargs = dict(METHODS[method], target_macs=TARGET)
        if method == "taylor":
            kwargs.update(
                data=data, batch_size=BATCH, batches=TAYLOR_BATCHES
            )
        if slow:
            Pruner._plan_counts = model_cost_search
            criteria.gradient_function = eager_gradients
        try:
            start = time.perf_counter()
            _, report = prune(model, **kwargs)
            seconds = time.perf_counter() - start
        finally:
            Pruner._plan_counts = fast_plan
            criteria.gradient_function = fast_gradients
        return seconds, report

    # Warm-up: the first call of each builds Keras's and TF's caches.
    clone()
    call("l2_local", False)
    rows = {}
    for method in METHODS:
        rows[method] = {
            "clone": [], "prune": [], "prune_before": [], "same_widths": [],
        }
    for repeat in range(args.repeats):
        for method in METHODS:
            row = rows[method]
            base = clone()
            fast, report = call(method, False)
            slow, slow_report = call(method, True)
            row["clone"].append(base)
            row["prune"].append(fast)
            row["prune_before"].append(slow)
            widths = [g.after for g in report.groups]
            row["same_widths"].append(
                widths == [g.after for g in slow_report.groups]
            )
            row["widths"] = widths
            row["macs_fraction"] = report.macs_fraction
            row["params_fraction"] = report.params_fraction
            row["report_seconds"] = report.seconds
            print(f"  keras {method} repeat {repeat + 1}: clone {base:.2f} s,"
                  f" prune {fast:.2f} s, as before {slow:.2f} s",
                  flush=True)
    out = {}
    for method, row in rows.items():
        out[method] = dict(
            row,
            median_s={
                k: statistics.median(row[k])
                for k in ("clone", "prune", "prune_before")
            },
            median_ratio_to_clone={
                k: statistics.median(
                    [t / c for t, c in zip(row[k], row["clone"])]
                )
                for k in ("prune", "prune_before")
            },
        )
    versions = {
        "keras": keras.__version__, "backend": keras.backend.backend(),
        "keras_dynfilt": keras_dynfilt.__version__,
    }
    return out, versions


# -- Torch-Pruning (run with the torch interpreter) --------------------------
def torch_worker(args):
    import copy

    import side_by_side_torch as st
    import torch
    import torch_pruning as tp

    torch.set_num_threads(args.threads)
    torch.set_num_interop_threads(args.threads)
    shape = (28, 28, 1)
    data = taylor_data(args.limit)
    torch.manual_seed(0)
    base = st.ResNetCifar(args.depth)
    out = {}
    for method in METHODS:
        row = {"deepcopy": [], "call": [], "ratio_search": []}
        for repeat in range(args.repeats):
            start = time.perf_counter()
            model = copy.deepcopy(base)
            row["deepcopy"].append(time.perf_counter() - start)
            start = time.perf_counter()
            ratio, fraction = st.find_ratio(base, method, shape, data, TARGET)
            row["ratio_search"].append(time.perf_counter() - start)
            row["call"].append(
                st.prune_once(model, method, ratio, shape, data)
            )
            row["ratio"] = ratio
            row["macs_fraction"] = fraction
            print(f"  torch {method} repeat {repeat + 1}: deepcopy "
                  f"{row['deepcopy'][-1]:.3f} s, call {row['call'][-1]:.2f}"
                  f" s, ratio search {row['ratio_search'][-1]:.2f} s",
                  file=sys.stderr, flush=True)
        row["median_s"] = {
            k: statistics.median(row[k])
            for k in ("deepcopy", "call", "ratio_search")
        }
        out[method] = row
    out["versions"] = {
        "torch": torch.__version__,
        # The distribution's version (1.6.1's module still says 1.6.0).
        "torch_pruning": importlib.metadata.version("torch-pruning"),
        "torch_pruning_module": getattr(tp, "__version__", None),
    }
    json.dump(out, sys.stdout)


def torch_run(args):
    command = [
        args.torch, os.path.abspath(__file__), "--torch-worker",
        "--repeats", str(args.repeats), "--depth", str(args.depth),
        "--threads", str(args.threads), "--limit", str(args.limit),
    ]
    done = subprocess.run(command, capture_output=True, text=True)
    sys.stderr.write(done.stderr[-4000:])
    if done.returncode:
        return {"error": done.stderr[-2000:]}
    return json.loads(done.stdout)


def table(result):
    lines = [
        "method     clone s  prune s  x clone  before s  x clone  speed-up"
        "  same  | TP call s  TP search s",
        "-" * 98,
    ]
    torch = result.get("torch") or {}
    for method, row in result["keras"].items():
        m, r = row["median_s"], row["median_ratio_to_clone"]
        t = torch.get(method, {}).get("median_s")
        tp = (f"{t['call']:9.2f}  {t['ratio_search']:11.2f}" if t
              else "        -            -")
        lines.append(
            f"{method:9s}  {m['clone']:7.2f}  {m['prune']:7.2f}  "
            f"{r['prune']:7.1f}  {m['prune_before']:8.2f}  "
            f"{r['prune_before']:7.1f}  "
            f"{m['prune_before'] / m['prune']:8.2f}  "
            f"{str(all(row['same_widths'])):>5s}  | {tp}"
        )
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--depth", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--limit", type=int, default=0,
                        help="draw the Taylor batches from the first N "
                        "training images (smoke runs)")
    parser.add_argument("--torch", default=None,
                        help="python with torch + torch-pruning")
    parser.add_argument("--output", default=None)
    parser.add_argument("--torch-worker", action="store_true",
                        help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.torch_worker:
        torch_worker(args)
        return
    load_before = os.getloadavg()
    x, y = taylor_data(args.limit)
    start = time.perf_counter()
    keras_rows, versions = keras_run(args, (x, y))
    torch_rows = torch_run(args) if args.torch else None
    if torch_rows and "versions" in torch_rows:
        versions.update(torch_rows.pop("versions"))
    result = {
        "command": "python " + " ".join(
            [os.path.relpath(__file__)] + (argv or sys.argv[1:])
        ),
        "network": f"resnet_cifar({args.depth}, shortcut='B'), 28x28x1, "
        "10 classes",
        "target_macs": TARGET,
        "taylor_data": f"{TAYLOR_BATCHES} batches of {BATCH} Fashion-MNIST "
        "training images (side_by_side_common.taylor_batches, seed 0)",
        "threads": args.threads,
        "repeats": args.repeats,
        "loadavg_before": load_before,
        "loadavg_after": os.getloadavg(),
        "wall_s": time.perf_counter() - start,
        "versions": dict(
            versions, python=platform.python_version(), commit=commit(),
            cpus=os.cpu_count(),
        ),
        "keras": keras_rows,
        "torch": torch_rows,
    }
    print(table(result))
    print(f"load average before {load_before}, after {result['loadavg_after']}")
    if args.output:
        common.write_json(args.output, result)


if __name__ == "__main__":
    main()
