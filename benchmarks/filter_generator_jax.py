"""FilterGenerator paths on the JAX backend (always XLA-compiled).

Times one `jax.jit`-compiled forward+backward step (gradients of `sum(y)`
with respect to the input and every trainable weight) of `FilterGenerator`
with `implementation="mix"`, `"patches"` and `"auto"`, and of a static
`keras.layers.Conv2D` with the same number of output filters, in interleaved
rounds of one run; prints the ratios of the fastest rounds to the static
convolution and writes JSON. This is the measurement behind
`implementation="auto"` on JAX (take the patches when they need fewer
multiply-adds); the TensorFlow benchmark is `benchmarks/filter_generator.py`.

    KERAS_BACKEND=jax nice -n 10 python benchmarks/filter_generator_jax.py \\
        --output docs/results/filter_generator/benchmark_jax.json
"""

import argparse
import json
import os
import pathlib
import platform
import statistics
import time

os.environ["KERAS_BACKEND"] = "jax"

import jax  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402

from keras_dynfilt.layers import FilterGenerator  # noqa: E402

FEATURES = 32
KERNEL = 3
# (batch, size, in_channels, filters, repository_size)
GRID = [
    (32, 28, 8, 8, 2),
    (32, 28, 8, 8, 8),
    (32, 28, 8, 8, 32),
    (32, 28, 8, 8, 64),
    (32, 28, 32, 32, 8),
    (32, 28, 32, 32, 32),
]


def make_step(layer, with_z):
    def loss(trainable, x, z):
        inputs = [x, z] if with_z else x
        y, _ = layer.stateless_call(trainable, [], inputs)
        return jax.numpy.sum(y)

    step = jax.jit(jax.grad(loss, argnums=(0, 1)))
    trainable = [v.value for v in layer.trainable_variables]
    return lambda x, z: step(trainable, x, z)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--output", default="docs/results/filter_generator/benchmark_jax.json"
    )
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    keras.utils.set_random_seed(0)
    rows = []
    print(f"{'B':>4} {'HW':>3} {'Cin':>4} {'N':>4} {'M':>3} {'auto':>7} "
          f"{'mix/conv':>8} {'pat/conv':>8} {'auto/conv':>9} {'conv ms':>8}")
    for batch, size, cin, filters, m in GRID:
        rng = np.random.default_rng(0)
        x = jax.numpy.asarray(rng.normal(size=(batch, size, size, cin)),
                              "float32")
        z = jax.numpy.asarray(rng.normal(size=(batch, FEATURES)), "float32")
        steps = {}
        for impl in ("mix", "patches", "auto"):
            layer = FilterGenerator(filters, KERNEL, m, padding="same",
                                    implementation=impl)
            layer.build([x.shape, z.shape])
            steps[impl] = make_step(layer, True)
        chosen = FilterGenerator(filters, KERNEL, m, padding="same")
        chosen = chosen._select_implementation(x.shape)
        conv = keras.layers.Conv2D(filters, KERNEL, padding="same")
        conv.build(x.shape)
        steps["conv2d"] = make_step(conv, False)
        for step in steps.values():
            jax.block_until_ready(step(x, z))
        times = {name: [] for name in steps}
        for _ in range(args.rounds):
            for name, step in steps.items():
                start = time.perf_counter()
                for _ in range(args.repeats):
                    out = step(x, z)
                jax.block_until_ready(out)
                times[name].append(
                    (time.perf_counter() - start) / args.repeats
                )
        median = {k: statistics.median(v) for k, v in times.items()}
        best = {k: min(v) for k, v in times.items()}
        row = {
            "batch": batch, "size": size, "in_channels": cin,
            "filters": filters, "repository_size": m,
            "auto_implementation": chosen,
            "median_s": median,
            "min_s": best,
            "ratio_mix_to_conv": best["mix"] / best["conv2d"],
            "ratio_patches_to_conv": best["patches"] / best["conv2d"],
            "ratio_auto_to_conv": best["auto"] / best["conv2d"],
        }
        rows.append(row)
        print(f"{batch:4d} {size:3d} {cin:4d} {filters:4d} {m:3d} "
              f"{chosen:>7} {row['ratio_mix_to_conv']:8.2f} "
              f"{row['ratio_patches_to_conv']:8.2f} "
              f"{row['ratio_auto_to_conv']:9.2f} "
              f"{best['conv2d'] * 1e3:8.1f}", flush=True)
    output = {
        "description": "JAX (jit) forward+backward step time; ratios of the "
        "fastest of interleaved rounds within one run",
        "command": "KERAS_BACKEND=jax nice -n 10 python "
        "benchmarks/filter_generator_jax.py",
        "machine": {"platform": platform.platform(),
                    "cpu_count": os.cpu_count(), "jax": jax.__version__,
                    "keras": keras.__version__},
        "rows": rows,
    }
    path = pathlib.Path(args.output)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(output, indent=2))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
