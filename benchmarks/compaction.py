"""Compaction benchmark: real FLOPs, parameters and deployment speed-ups.

Each case zeroes `floor(rate * N)` lowest-L2 units of every coupled filter
group (as the SFP callback does) in a model with random BatchNormalization
statistics and compacts it. The run measures multiply-adds and parameters
before and after, the wall time of `keras_dynfilt.pruning.compact`, the
largest output difference between the masked full model and the compacted
one, and the inference time of both, at batch 1 and 64, in every runtime:

- `tf`: the model as a compiled `tf.function`;
- `xla`: the same with `jit_compile=True`;
- `litert`: converted with `tf.lite.TFLiteConverter.from_saved_model` and
  run by `ai_edge_litert.interpreter.Interpreter` (the maintained LiteRT
  interpreter, default XNNPACK delegate);
- `onnx`: converted with `tf2onnx.convert.from_function` and run by ONNX
  Runtime's CPU execution provider (all graph optimisations);
- `onnx-extended` (not run by default): the same session with
  `ORT_ENABLE_EXTENDED`, which leaves out the NCHWc layout transformation
  (blocked convolutions that pad channel counts to the SIMD block).

Full and compacted model are timed in one run, interleaved (the order
alternates each repeat), so both see the same machine load; the reported
speed-up is the ratio of medians. The JSON is rewritten after every case,
so an interrupted run keeps the finished cases. The exporters are
optional: a runtime
whose package is missing is reported as skipped in the table and the JSON.
Needs the TensorFlow backend.

    pip install ai-edge-litert tf2onnx onnxruntime
    nice -n 10 python benchmarks/compaction.py \
        --output docs/results/pruning/deployment.json
"""

import argparse
import importlib
import json
import os
import platform
import shutil
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from keras_dynfilt.models import resnet_cifar  # noqa: E402
from keras_dynfilt.pruning import (  # noqa: E402
    apply_group_masks,
    compact,
    criteria,
    filter_groups,
    inference_latency,
    macs_reduction,
    model_cost,
)

# The random weights of the pruning tests (one copy, in tests/): this script
# runs from a checkout, as they do.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from tests.random_weights import randomize  # noqa: E402

CASES = {
    "resnet56-A": {"model": "ResNet-56 (A)", "rate": 0.4,
                   "input_shape": (32, 32, 3)},
    "resnet56-B": {"model": "ResNet-56 (B)", "rate": 0.4,
                   "input_shape": (32, 32, 3)},
    "mobilenetv2": {"model": "MobileNetV2", "rate": 0.4,
                    "input_shape": (64, 64, 3)},
    "resnet50": {"model": "ResNet50", "rate": 0.4,
                 "input_shape": (64, 64, 3)},
    "resnet20-A": {"model": "ResNet-20 (A)", "rate": 0.3,
                   "input_shape": (32, 32, 3)},
}
RUNTIMES = ("tf", "xla", "litert", "onnx", "onnx-extended")
DEFAULT_RUNTIMES = ("tf", "xla", "litert", "onnx")
# Python packages each runtime needs besides TensorFlow.
RUNTIME_PACKAGES = {
    "litert": ("ai_edge_litert",),
    "onnx": ("tf2onnx", "onnxruntime"),
    "onnx-extended": ("tf2onnx", "onnxruntime"),
}


def build(name, input_shape):
    if name.startswith("resnet56") or name.startswith("resnet20"):
        depth = int(name[6:8])
        return resnet_cifar(depth, shortcut=name[-1],
                            input_shape=input_shape)
    if name == "mobilenetv2":
        return keras.applications.MobileNetV2(
            input_shape=input_shape, weights=None, classes=10)
    if name == "resnet50":
        return keras.applications.ResNet50(
            input_shape=input_shape, weights=None, classes=10)
    raise ValueError(f"Unknown case: {name}")


def soft_prune(model, rate):
    """Zeroes the `pruned_count(N, rate)` lowest-L2 units of every group."""
    groups = list(filter_groups(model))
    apply_group_masks({
        group: criteria.lowest(scores, criteria.pruned_count(group.size, rate))
        for group, scores in zip(groups, criteria.score_groups(groups, "l2"))
    })


def missing_packages(runtime):
    return [
        p for p in RUNTIME_PACKAGES.get(runtime, ())
        if importlib.util.find_spec(p) is None
    ]


def signature(model):
    import tensorflow as tf

    return [tf.TensorSpec((None, *model.input_shape[1:]), tf.float32,
                          name="x")]


class Runner:
    """One model in one runtime: `runner(x)` returns the outputs."""

    def __init__(self, model, runtime, threads):
        self.runtime = runtime
        self.threads = threads
        self.model = model
        self._by_batch = {}
        start = time.perf_counter()
        getattr(self, f"_convert_{runtime.replace('-', '_')}")()
        self.conversion_s = time.perf_counter() - start

    def _convert_tf(self, jit_compile=False):
        import tensorflow as tf

        model = self.model
        self._fn = tf.function(lambda x: model(x, training=False),
                               input_signature=signature(model),
                               jit_compile=jit_compile)

    def _convert_xla(self):
        self._convert_tf(jit_compile=True)

    def _convert_litert(self):
        import tensorflow as tf

        # Through a SavedModel: converting the concrete function of a
        # Keras 3 model with `trackable_obj=model` keeps its variables as
        # READ_VARIABLE ops that LiteRT never initialises (NaN outputs).
        directory = tempfile.mkdtemp()
        try:
            self.model.export(directory, format="tf_saved_model",
                              input_signature=signature(self.model),
                              verbose=False)
            self._flatbuffer = tf.lite.TFLiteConverter.from_saved_model(
                directory).convert()
        finally:
            shutil.rmtree(directory, ignore_errors=True)

    def _convert_onnx_extended(self):
        import onnxruntime

        self._convert_onnx(
            onnxruntime.GraphOptimizationLevel.ORT_ENABLE_EXTENDED)

    def _convert_onnx(self, level=None):
        import onnxruntime
        import tensorflow as tf
        import tf2onnx

        model = self.model
        fn = tf.function(lambda x: model(x, training=False),
                         input_signature=signature(model))
        proto, _ = tf2onnx.convert.from_function(
            fn, input_signature=signature(model), opset=17)
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        # Spinning worker threads wait busily between kernels: on a shared
        # CPU they steal time from the other runtime's turn and from each
        # other (batch-1 times varied 40x with spinning on).
        options.add_session_config_entry(
            "session.intra_op.allow_spinning", "0")
        if level is not None:
            options.graph_optimization_level = level
        self._session = onnxruntime.InferenceSession(
            proto.SerializeToString(), options,
            providers=["CPUExecutionProvider"])
        self._input_name = self._session.get_inputs()[0].name

    def __call__(self, x):
        if self.runtime in ("tf", "xla"):
            return np.asarray(self._fn(x))
        if self.runtime.startswith("onnx"):
            return self._session.run(None, {self._input_name: x})[0]
        interpreter = self._by_batch.get(x.shape[0])
        if interpreter is None:
            from ai_edge_litert.interpreter import Interpreter

            interpreter = Interpreter(model_content=self._flatbuffer,
                                      num_threads=self.threads)
            index = interpreter.get_input_details()[0]["index"]
            interpreter.resize_tensor_input(index, x.shape)
            interpreter.allocate_tensors()
            self._by_batch[x.shape[0]] = interpreter
        interpreter.set_tensor(
            interpreter.get_input_details()[0]["index"], x)
        interpreter.invoke()
        return interpreter.get_tensor(
            interpreter.get_output_details()[0]["index"])


def relative_difference(a, b):
    return float(np.abs(a - b).max() / np.abs(b).max())


def timed(fn, x):
    start = time.perf_counter()
    fn(x)
    return time.perf_counter() - start


def compare(full, small, x, repeats):
    """Median time of both runners on `x`, interleaved.

    The `tf` runtime is the Keras models themselves, timed by the library's
    `keras_dynfilt.pruning.inference_latency`; XLA, LiteRT and ONNX Runtime
    run exported functions, which it cannot call: they are timed here, the
    same way (warmed up, interleaved, median).
    """
    if full.runtime == "tf":
        full_s, small_s = inference_latency(
            [full.model, small.model], x, repeats=repeats
        )
        return _timing(x, repeats, full_s, small_s)
    for fn in (full, small):  # trace, compile, allocate and warm up
        for _ in range(3):
            timed(fn, x)
    times = {"full": [], "compacted": []}
    pair = [("full", full), ("compacted", small)]
    for i in range(repeats):  # interleaved: both see the same machine load
        for name, fn in pair if i % 2 == 0 else pair[::-1]:
            times[name].append(timed(fn, x))
    return _timing(
        x, repeats, float(np.median(times["full"])),
        float(np.median(times["compacted"])),
    )


def _timing(x, repeats, full_s, small_s):
    return {
        "batch": int(x.shape[0]),
        "repeats": repeats,
        "full_ms": 1e3 * full_s,
        "compacted_ms": 1e3 * small_s,
        "speedup": full_s / small_s,
    }


def run_case(key, runtimes, repeats, seed, threads):
    case = CASES[key]
    keras.utils.set_random_seed(seed)
    rng = np.random.default_rng(seed)
    model = build(key, case["input_shape"])
    randomize(model, seed)  # BN statistics, so a pruned shift matters
    before = model_cost(model)
    soft_prune(model, case["rate"])
    start = time.perf_counter()
    small = compact(model)
    compaction_s = time.perf_counter() - start
    after = model_cost(small)
    x = {b: rng.random((b, *case["input_shape"])).astype("float32")
         for b in (1, 64)}
    reference = {"full": model.predict_on_batch(x[64]),
                 "compacted": small.predict_on_batch(x[64])}
    result = {
        "case": key,
        **case,
        "macs_before": before.macs,
        "macs_after": after.macs,
        "flops_reduction": macs_reduction(before, after),
        "params_before": before.params,
        "params_after": after.params,
        "params_reduction": 1 - after.params / before.params,
        "compaction_s": compaction_s,
        "max_relative_output_difference": relative_difference(
            reference["compacted"], reference["full"]),
        "runtimes": {},
    }
    print(f"{case['model']}: {100 * result['flops_reduction']:.1f}% fewer "
          f"MACs, compaction {compaction_s:.1f} s", flush=True)
    for runtime in runtimes:
        missing = missing_packages(runtime)
        if missing:
            result["runtimes"][runtime] = {
                "skipped": f"not installed: {', '.join(missing)}"}
            print(f"  {runtime}: skipped, not installed: {missing}")
            continue
        full = Runner(model, runtime, threads)
        compacted = Runner(small, runtime, threads)
        entry = {
            "conversion_s": [full.conversion_s, compacted.conversion_s],
            # Each exported model against its own Keras model.
            "max_relative_difference_to_keras": {
                "full": relative_difference(full(x[64]), reference["full"]),
                "compacted": relative_difference(
                    compacted(x[64]), reference["compacted"]),
            },
            "timings": [compare(full, compacted, x[b], repeats[b])
                        for b in (1, 64)],
        }
        result["runtimes"][runtime] = entry
        for t in entry["timings"]:
            print(f"  {runtime:<7} batch {t['batch']:>2}: full "
                  f"{t['full_ms']:8.2f} ms, compacted "
                  f"{t['compacted_ms']:8.2f} ms, {t['speedup']:.2f}x "
                  f"(median of {t['repeats']})", flush=True)
        del full, compacted
    return result


def print_table(results, runtimes):
    header = (f"{'model':<15}{'rate':>5}{'MACs before':>14}{'after':>13}"
              f"{'MACs -%':>8}{'params -%':>10}"
              + "".join(f"{r + ' b' + str(b):>11}"
                        for r in runtimes for b in (1, 64)))
    print(header)
    print("-" * len(header))
    for r in results:
        cells = []
        for runtime in runtimes:
            entry = r["runtimes"][runtime]
            for i in range(2):
                cells.append(
                    f"{entry['timings'][i]['speedup']:>10.2f}x"
                    if "timings" in entry else f"{'-':>11}")
        print(f"{r['model']:<15}{r['rate']:>5.1f}{r['macs_before']:>14,}"
              f"{r['macs_after']:>13,}{100 * r['flops_reduction']:>8.1f}"
              f"{100 * r['params_reduction']:>10.1f}" + "".join(cells))


def markdown(path):
    """The docs tables (docs/pruning.md) of a JSON this script wrote."""
    with open(path) as f:
        report = json.load(f)
    results = report["results"]
    print("| model | pruned per group | MACs before → after | MACs cut | "
          "params before → after | max rel. output diff |")
    print("|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['model']} {r['input_shape'][0]}x{r['input_shape'][1]} "
              f"| {100 * r['rate']:.0f}% "
              f"| {r['macs_before'] / 1e6:.1f} M → "
              f"{r['macs_after'] / 1e6:.1f} M "
              f"| {100 * r['flops_reduction']:.1f}% "
              f"| {r['params_before']:,} → {r['params_after']:,} "
              f"| {r['max_relative_output_difference']:.1e} |")
    runtimes = [k for k in RUNTIMES
                if any(k in r["runtimes"] for r in results)]
    print()
    print("| model | batch | "
          + " | ".join(f"{k} full → compacted ms" for k in runtimes) + " |")
    print("|---|---|" + "---|" * len(runtimes))
    for r in results:
        for i, batch in enumerate((1, 64)):
            cells = []
            for k in runtimes:
                entry = r["runtimes"].get(k, {})
                if "timings" not in entry:
                    cells.append(entry.get("skipped", "not run"))
                    continue
                t = entry["timings"][i]
                cells.append(f"{t['full_ms']:.1f} → {t['compacted_ms']:.1f} "
                             f"(**{t['speedup']:.2f}x**)")
            print(f"| {r['model']} | {batch} | " + " | ".join(cells) + " |")


def versions():
    found = {}
    for name in ("tensorflow", "ai_edge_litert", "tf2onnx", "onnxruntime",
                 "onnx"):
        try:
            module = importlib.import_module(name)
            found[name] = getattr(module, "__version__", "unknown")
        except ImportError:
            found[name] = None
    if found.get("ai_edge_litert") == "unknown":
        from importlib.metadata import version

        found["ai_edge_litert"] = version("ai-edge-litert")
    return found


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--output", default=None)
    parser.add_argument(
        "--markdown", default=None, metavar="JSON",
        help="only print the docs tables of a JSON written by this script")
    parser.add_argument("--cases", nargs="+", choices=sorted(CASES),
                        default=["resnet56-B", "mobilenetv2", "resnet50",
                                 "resnet56-A"])
    parser.add_argument("--runtimes", nargs="+", choices=RUNTIMES,
                        default=list(DEFAULT_RUNTIMES))
    parser.add_argument("--repeats-batch1", type=int, default=50)
    parser.add_argument("--repeats-batch64", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--threads", type=int, default=os.cpu_count(),
        help="threads of the LiteRT and ONNX Runtime CPU kernels "
        "(default: the number of CPUs)")
    parser.add_argument(
        "--intra-op-threads", type=int, default=0,
        help="TensorFlow intra-op threads (0: TensorFlow's default)")
    args = parser.parse_args()
    if args.markdown:
        return markdown(args.markdown)
    import tensorflow as tf

    if args.intra_op_threads:
        tf.config.threading.set_intra_op_parallelism_threads(
            args.intra_op_threads)
    repeats = {1: args.repeats_batch1, 64: args.repeats_batch64}
    load_at_start = os.getloadavg()
    start = time.perf_counter()
    results = []
    for case in args.cases:
        results.append(
            run_case(case, args.runtimes, repeats, args.seed, args.threads))
        if args.output:
            write(args, results, load_at_start, time.perf_counter() - start)
    print_table(results, args.runtimes)


def write(args, results, load_at_start, wall_s):
    report = {
        "command": " ".join(
            ["nice -n 10 python benchmarks/compaction.py", *sys.argv[1:]]),
        "arguments": vars(args),
        "keras": keras.__version__,
        "backend": keras.backend.backend(),
        "versions": versions(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "load_average_at_start": load_at_start,
        "load_average_at_end": os.getloadavg(),
        "wall_s": wall_s,
        "finished_cases": [r["case"] for r in results],
        "macs": "multiply-adds per sample (FLOPs = 2 x MACs)",
        "results": results,
    }
    os.makedirs(os.path.dirname(args.output) or ".", exist_ok=True)
    with open(args.output, "w") as f:
        json.dump(report, f, indent=2)
    print(f"wrote {args.output}", flush=True)


if __name__ == "__main__":
    main()
