"""Step time of default vs MirroredStrategy vs XLA training, as ratios.

Trains the demo's LightCNN (width 0.25, 28x28x1, batch 128 global) on
synthetic data in one process and reports the median training step time of
each configuration relative to the default strategy in graph mode, measured
in the same run. MirroredStrategy runs over two logical CPU devices (there
is no GPU here), which shows the overhead of the distribution machinery, not
a speed-up.

    python benchmarks/training_step.py --steps 30 --repeats 3
"""

import argparse
import json
import os
import pathlib
import platform
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402

tf.config.set_logical_device_configuration(
    tf.config.list_physical_devices("CPU")[0],
    [tf.config.LogicalDeviceConfiguration()] * 2,
)

import keras  # noqa: E402

import keras_dynfilt  # noqa: E402
from keras_dynfilt.training import compile_replica_jit  # noqa: E402

CONFIGS = [
    ("default", False),
    ("default", True),
    ("mirrored", False),
    ("mirrored", True),
]


def measure(strategy_name, jit, steps, repeats, batch):
    strategy = (
        tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
        if strategy_name == "mirrored"
        else tf.distribute.get_strategy()
    )
    keras.utils.set_random_seed(0)
    x = tf.random.uniform((batch, 28, 28, 1))
    y = tf.random.uniform((batch,), maxval=10, dtype=tf.int32)
    data = tf.data.Dataset.from_tensors((x, y)).repeat()
    with strategy.scope():
        model = keras_dynfilt.models.light_cnn(
            (28, 28, 1), 10, width_multiplier=0.25
        )
        compile_replica_jit(
            model,
            optimizer="adam",
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            jit_compile=jit,
        )
    model.fit(data, epochs=1, steps_per_epoch=3, verbose=0)  # compile/warm
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        model.fit(data, epochs=1, steps_per_epoch=steps, verbose=0)
        times.append((time.perf_counter() - start) / steps)
    return statistics.median(times), strategy.num_replicas_in_sync


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument(
        "--output", default="docs/results/training/step_time.json"
    )
    args = parser.parse_args()
    rows = []
    for name, jit in CONFIGS:
        seconds, replicas = measure(
            name, jit, args.steps, args.repeats, args.batch_size
        )
        rows.append(
            {
                "strategy": name,
                "jit_compile": jit,
                "replicas": replicas,
                "step_ms": seconds * 1e3,
            }
        )
    base = rows[0]["step_ms"]
    for row in rows:
        row["ratio_to_default_graph"] = row["step_ms"] / base
    print("| strategy | XLA | replicas | step (ms) | ratio to default |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['strategy']} | {r['jit_compile']} | {r['replicas']} | "
            f"{r['step_ms']:.1f} | {r['ratio_to_default_graph']:.2f}x |"
        )
    out = pathlib.Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "benchmark": "training_step",
                "arguments": vars(args),
                "model": "light_cnn width 0.25, 28x28x1, 10 classes",
                "versions": {
                    "keras": keras.__version__,
                    "tensorflow": tf.__version__,
                    "keras_dynfilt": keras_dynfilt.__version__,
                },
                "machine": {
                    "platform": platform.platform(),
                    "cpus": os.cpu_count(),
                },
                "rows": rows,
            },
            indent=2,
        )
    )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
