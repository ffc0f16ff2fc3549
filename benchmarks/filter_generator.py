"""FilterGenerator speed: ratios to a static Conv2D and to a per-sample map_fn.

For each shape of the grid, one forward+backward step (gradients of
`sum(y)` with respect to the input and every trainable weight) of

- `FilterGenerator` with `implementation="mix"` (what `"auto"` takes on
  TensorFlow) and `"patches"`,
- a static `keras.layers.Conv2D` with the same number of output filters,
- a naive per-sample implementation: the per-sample kernels of
  `FilterGenerator.generate_filters`, then `tf.map_fn` over the batch of a
  `tf.nn.conv2d` per sample,

is timed as a `tf.function`, once as a plain graph and once compiled with XLA
(`jit_compile=True`). The `map/conv` column (map_fn over the static Conv2D)
bounds the speed-up over map_fn that any layer costing as much as a static
convolution can reach. The implementations are timed in interleaved rounds in
the same process and the ratios divide the fastest round of each (the
estimate least disturbed by other processes on a shared machine; the medians
are in the JSON too), so they are measured in one run on the same machine.
Peak memory is the CPU allocator's peak
(`tf.config.experimental.get_memory_info`) during the compile and warm-up
steps, after a reset.

Run (about 15 minutes on 2 busy CPU cores):

    nice -n 10 python benchmarks/filter_generator.py \\
        --output docs/results/filter_generator/benchmark.json
"""

import argparse
import json
import os
import pathlib
import platform
import statistics
import sys
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from keras_dynfilt.layers import FilterGenerator  # noqa: E402

FEATURES = 32  # length of the sample feature vector z
KERNEL = 3

# (batch, size, in_channels, filters, repository_size)
GRID = [
    *[(32, 28, 8, 8, m) for m in (2, 8, 64)],
    *[(32, 28, 32, 32, m) for m in (2, 8, 32)],
    (32, 28, 128, 128, 32),
    (32, 56, 32, 32, 8),
    (128, 28, 32, 32, 8),
    (256, 28, 8, 8, 8),
]
QUICK_GRID = [(8, 12, 4, 4, 2), (8, 12, 4, 4, 16)]


def naive_step_fn(layer):
    """Per-sample kernels, then one conv per sample with `tf.map_fn`."""

    def forward(x, z):
        kernels = layer.generate_filters(z)

        def one(args):
            xb, kb = args
            return tf.nn.conv2d(xb[None], kb, 1, layer.padding.upper())[0]

        y = tf.map_fn(one, (x, kernels), fn_output_signature=x.dtype)
        return y + layer.bias

    return forward


def make_step(forward, variables, jit_compile):
    @tf.function(jit_compile=jit_compile, reduce_retracing=True)
    def step(x, z):
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.reduce_sum(forward(x, z))
        return tape.gradient(loss, [x, *variables])

    return step


def build_candidates(shape):
    batch, size, cin, filters, m = shape
    candidates = {}
    for impl in ("mix", "patches"):
        layer = FilterGenerator(
            filters, KERNEL, m, padding="same", implementation=impl
        )
        layer.build([(None, size, size, cin), (None, FEATURES)])
        candidates[f"fg_{impl}"] = (
            (lambda x, z, layer=layer: layer([x, z])),
            layer.trainable_variables,
        )
    conv = keras.layers.Conv2D(filters, KERNEL, padding="same")
    conv.build((None, size, size, cin))
    candidates["conv2d"] = (
        (lambda x, z: conv(x)),
        conv.trainable_variables,
    )
    naive = FilterGenerator(filters, KERNEL, m, padding="same")
    naive.build([(None, size, size, cin), (None, FEATURES)])
    candidates["map_fn"] = (naive_step_fn(naive), naive.trainable_variables)
    return candidates


def time_candidates(candidates, x, z, jit_compile, rounds, min_time):
    steps = {
        name: make_step(fwd, variables, jit_compile)
        for name, (fwd, variables) in candidates.items()
    }
    peaks, repeats = {}, {}
    for name, step in steps.items():
        tf.config.experimental.reset_memory_stats("CPU:0")
        start = time.perf_counter()
        for _ in range(2):  # trace/compile + one warm-up step
            [g.numpy() for g in step(x, z)]
        warm = time.perf_counter() - start
        peaks[name] = tf.config.experimental.get_memory_info("CPU:0")["peak"]
        one = max(warm / 2, 1e-4)
        repeats[name] = max(1, min(20, int(min_time / one)))
    times = {name: [] for name in steps}
    for _ in range(rounds):
        for name, step in steps.items():
            start = time.perf_counter()
            for _ in range(repeats[name]):
                out = step(x, z)
            [g.numpy() for g in out]
            times[name].append((time.perf_counter() - start) / repeats[name])
    return {
        name: {
            "median_s": statistics.median(t),
            "min_s": min(t),
            "peak_bytes": peaks[name],
        }
        for name, t in times.items()
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--output",
        default="docs/results/filter_generator/benchmark.json",
        help="where to write the JSON results",
    )
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--min-time",
        type=float,
        default=0.15,
        help="seconds of steps per timed round (repeats short steps)",
    )
    parser.add_argument(
        "--quick", action="store_true", help="two tiny shapes (smoke test)"
    )
    args = parser.parse_args()
    tf.get_logger().setLevel("ERROR")
    keras.utils.set_random_seed(0)
    grid = QUICK_GRID if args.quick else GRID
    rows = []
    started = time.time()
    header = (
        f"{'mode':5} {'B':>4} {'HW':>3} {'Cin':>4} {'N':>4} {'M':>3} "
        f"{'auto':>7} {'fg/conv':>8} {'pat/conv':>8} "
        f"{'map_fn/fg':>9} {'map/conv':>8} {'conv ms':>8} {'fg MB':>7} "
        f"{'conv MB':>7} "
        f"{'map MB':>7}"
    )
    print(header, flush=True)
    for shape in grid:
        batch, size, cin, filters, m = shape
        rng = np.random.default_rng(0)
        x = tf.constant(rng.normal(size=(batch, size, size, cin)), "float32")
        z = tf.constant(rng.normal(size=(batch, FEATURES)), "float32")
        candidates = build_candidates(shape)
        chosen = FilterGenerator(
            filters, KERNEL, m, padding="same"
        )._select_implementation(x.shape)
        for mode, jit in (("graph", False), ("xla", True)):
            result = time_candidates(
                candidates, x, z, jit, args.rounds, args.min_time
            )
            conv = result["conv2d"]["min_s"]
            fg = result["fg_mix"]["min_s"]
            row = {
                "mode": mode,
                "batch": batch,
                "size": size,
                "in_channels": cin,
                "filters": filters,
                "repository_size": m,
                "kernel_size": KERNEL,
                "auto_implementation": chosen,
                "results": result,
                "ratio_fg_to_conv": fg / conv,
                "ratio_patches_to_conv": (
                    result["fg_patches"]["min_s"] / conv
                ),
                "speedup_vs_map_fn": result["map_fn"]["min_s"] / fg,
                # The per-sample baseline against the static Conv2D: the
                # speed-up over map_fn of anything that costs as much as a
                # static convolution with N filters.
                "ratio_map_fn_to_conv": result["map_fn"]["min_s"] / conv,
                "ratio_fg_to_conv_of_medians": (
                    result["fg_mix"]["median_s"]
                    / result["conv2d"]["median_s"]
                ),
            }
            rows.append(row)
            mb = 2**20
            print(
                f"{mode:5} {batch:4d} {size:3d} {cin:4d} {filters:4d} {m:3d} "
                f"{chosen:>7} {row['ratio_fg_to_conv']:8.2f} "
                f"{row['ratio_patches_to_conv']:8.2f} "
                f"{row['speedup_vs_map_fn']:9.1f} "
                f"{row['ratio_map_fn_to_conv']:8.1f} {conv * 1e3:8.1f} "
                f"{result['fg_mix']['peak_bytes'] / mb:7.1f} "
                f"{result['conv2d']['peak_bytes'] / mb:7.1f} "
                f"{result['map_fn']['peak_bytes'] / mb:7.1f}",
                flush=True,
            )
    summary = {}
    for mode in ("graph", "xla"):
        mode_rows = [r for r in rows if r["mode"] == mode]
        small = [
            r for r in mode_rows if r["repository_size"] <= r["filters"]
        ]
        summary[mode] = {
            "median_ratio_fg_to_conv_when_m_le_n": statistics.median(
                r["ratio_fg_to_conv"] for r in small
            )
            if small
            else None,
            "median_ratio_fg_to_conv_all": statistics.median(
                r["ratio_fg_to_conv"] for r in mode_rows
            ),
            "median_speedup_vs_map_fn": statistics.median(
                r["speedup_vs_map_fn"] for r in mode_rows
            ),
            "min_speedup_vs_map_fn": min(
                r["speedup_vs_map_fn"] for r in mode_rows
            ),
            "median_ratio_map_fn_to_conv": statistics.median(
                r["ratio_map_fn_to_conv"] for r in mode_rows
            ),
        }
    print(json.dumps(summary, indent=2))
    output = {
        "description": "forward+backward step time; ratios of the fastest "
        "of interleaved rounds within one run (fg = FilterGenerator with "
        "implementation='mix', what 'auto' takes on TensorFlow)",
        "command": " ".join(["python", *sys.argv]),
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor(),
            "cpu_count": os.cpu_count(),
            "tensorflow": tf.__version__,
            "keras": keras.__version__,
        },
        "wall_time_s": time.time() - started,
        "summary": summary,
        "rows": rows,
    }
    path = pathlib.Path(args.output)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(output, indent=2))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
