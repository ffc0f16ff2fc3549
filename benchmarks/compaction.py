"""Compaction benchmark: real FLOPs, parameters and CPU speed of pruned ResNets.

For CIFAR ResNet-56 with 40% and ResNet-20 with 30% of every coupled filter
group zeroed (the lowest-L2 units, as the SFP callback does), this measures
in one run: multiply-adds and parameters before and after compaction, the
wall time of `keras_dynfilt.pruning.compact`, the largest output difference
between the masked full model and the compacted one, and the inference time
of both at batch 1 and 64, as a compiled `tf.function` with and without XLA
(median of interleaved repeats; the ratio is the speed-up). Needs the
TensorFlow backend.

    nice -n 10 python benchmarks/compaction.py \
        --output docs/results/pruning/benchmark.json
"""

import argparse
import json
import os
import platform
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from keras_dynfilt.models import resnet_cifar  # noqa: E402
from keras_dynfilt.pruning import (  # noqa: E402
    apply_group_mask,
    compact,
    filter_groups,
    model_cost,
)

CASES = [
    {"depth": 56, "rate": 0.4, "shortcut": "A"},
    {"depth": 20, "rate": 0.3, "shortcut": "A"},
]


def soft_prune(model, rate):
    """Zeroes floor(N * rate) lowest-L2 units of every group."""
    for group in filter_groups(model):
        norms = np.linalg.norm(group.filter_weights(), axis=1)
        keep = np.ones(group.size, bool)
        keep[np.argsort(norms)[: int(group.size * rate)]] = False
        apply_group_mask(group, keep)


def randomize_bn(model, rng):
    for w in model.weights:
        if "moving_variance" in w.path:
            w.assign(rng.uniform(0.5, 2.0, tuple(w.shape)).astype("float32"))
        elif w.name in ("gamma", "beta", "moving_mean"):
            w.assign(rng.normal(0.0, 0.5, tuple(w.shape)).astype("float32"))


def compiled(model, jit_compile):
    """The model's inference as one compiled TensorFlow function."""
    import tensorflow as tf

    return tf.function(
        lambda x: model(x, training=False), jit_compile=jit_compile
    )


def timed(fn, x):
    start = time.perf_counter()
    np.asarray(fn(x))
    return time.perf_counter() - start


def inference_times(full, small, batch, repeats, rng, jit_compile):
    import tensorflow as tf

    x = tf.constant(rng.random((batch, 32, 32, 3)).astype("float32"))
    fns = {
        "masked": compiled(full, jit_compile),
        "compacted": compiled(small, jit_compile),
    }
    for fn in fns.values():  # trace, compile and warm up
        for _ in range(3):
            timed(fn, x)
    times = {"masked": [], "compacted": []}
    for i in range(repeats):  # interleaved: both see the same machine load
        order = list(fns.items())
        for name, fn in order if i % 2 == 0 else order[::-1]:
            times[name].append(timed(fn, x))
    masked = float(np.median(times["masked"]))
    compacted = float(np.median(times["compacted"]))
    return {
        "batch": batch,
        "xla": jit_compile,
        "repeats": repeats,
        "masked_ms": 1e3 * masked,
        "compacted_ms": 1e3 * compacted,
        "speedup": masked / compacted,
    }


def run_case(case, repeats, seed):
    keras.utils.set_random_seed(seed)
    rng = np.random.default_rng(seed)
    model = resnet_cifar(case["depth"], shortcut=case["shortcut"])
    randomize_bn(model, rng)
    before = model_cost(model)
    soft_prune(model, case["rate"])
    start = time.perf_counter()
    small = compact(model)
    compaction_s = time.perf_counter() - start
    after = model_cost(small)
    x = rng.random((16, 32, 32, 3)).astype("float32")
    full_out = model.predict_on_batch(x)
    small_out = small.predict_on_batch(x)
    rel = float(np.abs(full_out - small_out).max() / np.abs(full_out).max())
    result = {
        **case,
        "macs_before": before.macs,
        "macs_after": after.macs,
        "flops_reduction": 1 - after.macs / before.macs,
        "params_before": before.params,
        "params_after": after.params,
        "params_reduction": 1 - after.params / before.params,
        "compaction_s": compaction_s,
        "max_relative_output_difference": rel,
        "inference": [
            inference_times(model, small, batch, n, rng, jit)
            for jit in (False, True)
            for batch, n in ((1, repeats[0]), (64, repeats[1]))
        ],
    }
    return result


def channel_microbenchmark(repeats=30):
    """One 3x3 convolution (64x32x32 input) at 16, 10 and 8 channels.

    ResNet-56 pruned 40% has 10-, 20- and 39-channel layers; on CPU a conv's
    time does not fall in proportion to its multiply-adds at such widths.
    """
    import tensorflow as tf

    rng = np.random.default_rng(0)
    cases = {}
    for channels in (16, 10, 8):
        x = tf.constant(rng.random((64, 32, 32, channels)), tf.float32)
        k = tf.constant(rng.random((3, 3, channels, channels)), tf.float32)
        fn = tf.function(lambda a, k=k: tf.nn.conv2d(a, k, 1, "SAME"))
        for _ in range(3):
            timed(fn, x)
        cases[channels] = (fn, x, [])
    for i in range(repeats):  # interleaved, rotating order
        order = list(cases.values())
        for fn, x, times in order[i % 3 :] + order[: i % 3]:
            times.append(timed(fn, x))
    found = [
        {"channels": c, "ms": 1e3 * float(np.median(times)),
         "macs_vs_16": c**2 / 256}
        for c, (_, _, times) in cases.items()
    ]
    for f in found:
        f["time_vs_16"] = f["ms"] / found[0]["ms"]
        print(f"conv3x3 {f['channels']:>2} -> {f['channels']:>2} channels: "
              f"{f['ms']:.2f} ms ({f['time_vs_16']:.2f} of the time, "
              f"{f['macs_vs_16']:.2f} of the multiply-adds of 16 -> 16)")
    return found


def print_table(results):
    header = (
        f"{'model':<12}{'rate':>5}{'MACs before':>14}{'after':>13}"
        f"{'FLOPs -%':>9}{'params -%':>10}{'compact s':>10}"
        f"{'b1 x':>7}{'b64 x':>7}{'b1 xla':>8}{'b64 xla':>8}"
    )
    print(header)
    print("-" * len(header))
    for r in results:
        print(
            f"{'ResNet-' + str(r['depth']):<12}{r['rate']:>5.1f}"
            f"{r['macs_before']:>14,}{r['macs_after']:>13,}"
            f"{100 * r['flops_reduction']:>9.1f}"
            f"{100 * r['params_reduction']:>10.1f}"
            f"{r['compaction_s']:>10.2f}"
            f"{r['inference'][0]['speedup']:>7.2f}"
            f"{r['inference'][1]['speedup']:>7.2f}"
            f"{r['inference'][2]['speedup']:>8.2f}"
            f"{r['inference'][3]['speedup']:>8.2f}"
        )
    for r in results:
        for t in r["inference"]:
            print(
                f"ResNet-{r['depth']} batch {t['batch']:>2}"
                f"{' XLA' if t['xla'] else ''}: masked "
                f"{t['masked_ms']:.1f} ms, compacted {t['compacted_ms']:.1f} "
                f"ms, speed-up {t['speedup']:.2f}x (median of {t['repeats']})"
            )


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--output", default=None)
    parser.add_argument("--repeats-batch1", type=int, default=60)
    parser.add_argument("--repeats-batch64", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--intra-op-threads", type=int, default=0,
        help="TensorFlow intra-op threads (0: TensorFlow's default)",
    )
    args = parser.parse_args()
    if args.intra_op_threads:
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(
            args.intra_op_threads
        )
    results = [
        run_case(c, (args.repeats_batch1, args.repeats_batch64), args.seed)
        for c in CASES
    ]
    print_table(results)
    micro = channel_microbenchmark()
    if args.output:
        import tensorflow as tf

        report = {
            "command": "nice -n 10 python benchmarks/compaction.py "
            f"--output {args.output}"
            + (f" --intra-op-threads {args.intra_op_threads}"
               if args.intra_op_threads else ""),
            "intra_op_threads": args.intra_op_threads or "default",
            "keras": keras.__version__,
            "backend": keras.backend.backend(),
            "tensorflow": tf.__version__,
            "python": platform.python_version(),
            "cpu_count": os.cpu_count(),
            "load_average_at_end": os.getloadavg(),
            "macs": "multiply-adds per sample (FLOPs = 2 x MACs)",
            "results": results,
            "conv_width_microbenchmark": micro,
        }
        os.makedirs(os.path.dirname(args.output) or ".", exist_ok=True)
        with open(args.output, "w") as f:
            json.dump(report, f, indent=2)
        print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
