"""Training-step time of NDDR-CNN against two single-task networks.

All networks are built by `keras_dynfilt.models.nddr_network` from the same
stages (VGG-like: `--convs` conv-BN-ReLU per stage, then 2x2 max-pooling)
and the same two heads, and differ only in the fusion. Timed in one process,
interleaved round by round (so machine load hits all alike), one
`train_on_batch` per step. Each round gives a ratio to the baseline timed in
the same round; the reported ratio is the median of these paired ratios,
for wall-clock time and for process CPU time (all threads; robust on a
shared machine, where wall time also counts waiting for a core):

- `single_pair_joint`: `fusion="none"`, the two single-task networks side
  by side in one model (one step trains both);
- `single_pair_separate`: the two single-task networks as two models, one
  step each (the time of both is summed);
- `nddr`, `nddr_shortcut`, `cross_stitch`, `shared`.

The target is `nddr / single_pair_joint <= 1.25`. Parameter overhead is
counted on the benchmarked networks and, for the paper's figure (+0.8% on
VGG-16), on the five NDDR layers of a two-task VGG-16 against two VGG-16s.

    nice -n 10 python benchmarks/nddr.py                 # writes the JSON
    python benchmarks/nddr.py --rounds 3 --steps 3 --output /tmp/b.json
"""

import argparse
import json
import os
import platform
import statistics
import time

import keras
import numpy as np

import keras_dynfilt
from keras_dynfilt.layers import NDDR
from keras_dynfilt.models import conv_stage, nddr_network
from keras_dynfilt.optimizers import LearningRateMultiplier

VGG16_STAGES = ((64, 2), (128, 2), (256, 3), (512, 3), (512, 3))


def vgg16_params(num_classes=1000):
    """Parameters of VGG-16 (224x224x3, 138,357,544 for 1000 classes)."""
    total, cin = 0, 3
    for width, convs in VGG16_STAGES:
        for _ in range(convs):
            total += 3 * 3 * cin * width + width
            cin = width
    for fan_in, fan_out in ((7 * 7 * 512, 4096), (4096, 4096),
                            (4096, num_classes)):
        total += fan_in * fan_out + fan_out
    return total


def vgg16_nddr_params():
    """Parameters of the 5 NDDR layers of a two-task VGG-16 (after pool1-5)."""
    total = 0
    for width, _ in VGG16_STAGES:
        layer = NDDR()
        layer.build([(None, 2, 2, width)] * 2)
        total += layer.count_params()
    return total


def make_model(args, fusion, shortcut=False, heads=(10, 8)):
    widths = [int(w) for w in args.widths.split(",")]
    stages = [conv_stage(w, num_convs=args.convs, name=f"stage{s + 1}")
              for s, w in enumerate(widths)]
    head_layers = [
        keras.Sequential([keras.layers.GlobalAveragePooling2D(),
                          keras.layers.Dense(n)], name=f"head_{k}")
        for k, n in enumerate(heads)
    ]
    model = nddr_network(
        (args.size, args.size, 3), stages, head_layers, fusion=fusion,
        shortcut=shortcut, nddr_kwargs={"lr_multiplier": 100.0},
        cross_stitch_kwargs={"lr_multiplier": 100.0},
        task_names=[f"task_{k}" for k in range(len(heads))],
    )
    model.compile(
        optimizer=LearningRateMultiplier(keras.optimizers.SGD(0.01, 0.9)),
        loss=[keras.losses.SparseCategoricalCrossentropy(from_logits=True)]
        * len(heads),
        jit_compile=args.jit_compile == "true",
    )
    return model


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--widths", default="32,64,128")
    parser.add_argument("--convs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--steps", type=int, default=3,
                        help="steps per model per round")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--jit-compile", default="false",
                        choices=("true", "false"))
    parser.add_argument("--output",
                        default="docs/results/nddr/benchmark.json")
    args = parser.parse_args()
    keras.utils.set_random_seed(0)

    rng = np.random.default_rng(0)
    x = rng.uniform(size=(args.batch_size, args.size, args.size, 3)).astype(
        "float32")
    y = [rng.integers(0, n, args.batch_size) for n in (10, 8)]
    variants = {
        "single_pair_joint": make_model(args, "none"),
        "nddr": make_model(args, "nddr"),
        "nddr_shortcut": make_model(args, "nddr", shortcut=True),
        "cross_stitch": make_model(args, "cross_stitch"),
        "shared": make_model(args, "shared"),
    }
    separate = [make_model(args, "none", heads=(n,)) for n in (10, 8)]

    def step_fns():
        fns = {name: (lambda m=m: m.train_on_batch(x, y))
               for name, m in variants.items()}
        fns["single_pair_separate"] = lambda: [
            m.train_on_batch(x, [t]) for m, t in zip(separate, y)]
        return fns

    fns = step_fns()
    for fn in fns.values():
        for _ in range(args.warmup):
            fn()
    times = {name: [] for name in fns}
    cpu = {name: [] for name in fns}
    for _ in range(args.rounds):
        for name, fn in fns.items():
            start, start_cpu = time.perf_counter(), time.process_time()
            for _ in range(args.steps):
                fn()
            times[name].append((time.perf_counter() - start) / args.steps)
            cpu[name].append((time.process_time() - start_cpu) / args.steps)
    median = {name: statistics.median(t) for name, t in times.items()}

    def paired(series, baseline):
        return {
            name: statistics.median(
                t / b for t, b in zip(values, series[baseline]))
            for name, values in series.items()
        }
    params = {name: m.count_params() for name, m in variants.items()}
    params["single_pair_separate"] = sum(m.count_params() for m in separate)
    vgg, vgg_nddr = vgg16_params(), vgg16_nddr_params()
    results = {
        "arguments": vars(args),
        "versions": {"keras_dynfilt": keras_dynfilt.__version__,
                     "keras": keras.__version__,
                     "backend": keras.backend.backend()},
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "step_seconds_median": median,
        "step_seconds_min": {n: min(t) for n, t in times.items()},
        "step_cpu_seconds_median": {
            n: statistics.median(t) for n, t in cpu.items()},
        "step_seconds_all": times,
        "step_cpu_seconds_all": cpu,
        "ratio_to_single_pair_joint": paired(times, "single_pair_joint"),
        "ratio_to_single_pair_separate": paired(
            times, "single_pair_separate"),
        "cpu_ratio_to_single_pair_joint": paired(cpu, "single_pair_joint"),
        "cpu_ratio_to_single_pair_separate": paired(
            cpu, "single_pair_separate"),
        "target_nddr_ratio": 1.25,
        "params": params,
        "param_overhead_vs_single_pair": {
            n: p / params["single_pair_joint"] - 1 for n, p in params.items()},
        "vgg16": {"two_vgg16_params": 2 * vgg, "nddr_params": vgg_nddr,
                  "overhead": vgg_nddr / (2 * vgg),
                  "nddr_params_per_task": vgg_nddr / 2,
                  "paper": "1.2M, 0.8% of VGG-16's 138M"},
    }
    print(f"{'network':22s} {'step ms':>8s} {'ratio':>6s} {'ratio2':>6s} "
          f"{'cpu ms':>8s} {'cpu r':>6s} {'cpu r2':>6s} {'params':>8s} "
          f"{'overhead':>8s}")
    for name in median:
        r = results
        print(f"{name:22s} {1e3 * median[name]:8.1f} "
              f"{r['ratio_to_single_pair_joint'][name]:6.3f} "
              f"{r['ratio_to_single_pair_separate'][name]:6.3f} "
              f"{1e3 * r['step_cpu_seconds_median'][name]:8.1f} "
              f"{r['cpu_ratio_to_single_pair_joint'][name]:6.3f} "
              f"{r['cpu_ratio_to_single_pair_separate'][name]:6.3f} "
              f"{params[name]:8d} "
              f"{r['param_overhead_vs_single_pair'][name]:+8.2%}")
    print("ratio: to single_pair_joint, ratio2: to single_pair_separate "
          "(medians of per-round ratios); cpu: process CPU time")
    print(f"VGG-16 two tasks: NDDR layers {vgg_nddr:,} params = "
          f"{vgg_nddr / (2 * vgg):.2%} of two VGG-16s ({2 * vgg:,})")
    os.makedirs(os.path.dirname(args.output) or ".", exist_ok=True)
    with open(args.output, "w") as f:
        json.dump(results, f, indent=2)
    print(f"-> {args.output}")


if __name__ == "__main__":
    main()
