"""W-Softmax training-step ratios on the JAX backend (GPU or CPU).

`benchmarks/wsoftmax_head.py` is TensorFlow's (`tf.function`); this is the
same head-alone measurement as one `jax.jit`-compiled step (forward, softmax
cross-entropy, backward, SGD update through `stateless_call` /
`stateless_apply`) of `dense` (`keras.layers.Dense(K)`), `normalized`
(`WSoftmaxHead(K, alpha=0)`) and `wsoftmax` (`WSoftmaxHead(K, alpha=1)`),
timed interleaved in one run; the ratios to `dense` of the fastest rounds
are printed as a table and written as JSON, beside the matrix-product floor
of `benchmarks/wsoftmax_head.py`.

    KERAS_BACKEND=jax python benchmarks/gpu/step_ratios.py \\
        --output /tmp/step_ratios.json
"""

import argparse
import json
import os
import pathlib
import platform
import sys
import time

os.environ["KERAS_BACKEND"] = "jax"

import jax  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402

from keras_dynfilt.layers import WSoftmaxHead  # noqa: E402

KINDS = ("dense", "normalized", "wsoftmax")


def matmul_floor(batch, num_classes, dim):
    """As in benchmarks/wsoftmax_head.py: W-Softmax / Dense multiply-adds."""
    dense = 3 * batch * num_classes * dim
    if 2 * num_classes <= 3 * batch:
        extra = 2 * num_classes * num_classes * dim
    else:
        extra = 3 * batch * num_classes * dim
    return (dense + extra) / dense


def build(kind, num_classes, dim):
    features = keras.Input((dim,))
    labels = keras.Input((), dtype="int32")
    if kind == "dense":
        logits = keras.layers.Dense(num_classes)(features)
    else:
        alpha = 0.0 if kind == "normalized" else 1.0
        logits = WSoftmaxHead(num_classes, alpha=alpha)(
            features, labels=labels
        )
    return keras.Model([features, labels], logits)


def make_step(model, steps):
    optimizer = keras.optimizers.SGD(0.01, momentum=0.9)
    optimizer.build(model.trainable_variables)
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    def loss(trainable, non_trainable, features, labels):
        logits, non_trainable = model.stateless_call(
            trainable, non_trainable, [features, labels], training=True
        )
        return loss_fn(labels, logits), non_trainable

    grad = jax.value_and_grad(loss, has_aux=True)

    @jax.jit
    def train(state, features, labels):
        def one(_, state):
            trainable, non_trainable, opt = state
            (value, non_trainable), grads = grad(
                trainable, non_trainable, features, labels
            )
            trainable, opt = optimizer.stateless_apply(opt, grads, trainable)
            return trainable, non_trainable, opt

        return jax.lax.fori_loop(0, steps, one, state)

    state = (
        [v.value for v in model.trainable_variables],
        [v.value for v in model.non_trainable_variables],
        [v.value for v in optimizer.variables],
    )
    return lambda f, y: train(state, f, y)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--classes", type=int, nargs="+",
                        default=[10, 100, 1000])
    parser.add_argument("--dims", type=int, nargs="+", default=[64, 512])
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=20,
                        help="training steps inside one compiled call")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--output", default=None)
    args = parser.parse_args(argv)
    rows = []
    print(f"{'K':>5} {'D':>4} {'B':>4} {'norm/dense':>10} "
          f"{'wsm/dense':>9} {'floor':>6} {'dense ms':>8}")
    for num_classes in args.classes:
        for dim in args.dims:
            rng = np.random.default_rng(0)
            batch = args.batch_size
            features = jax.numpy.asarray(
                rng.normal(size=(batch, dim)), "float32")
            labels = jax.numpy.asarray(
                rng.integers(0, num_classes, batch), "int32")
            steps = {}
            for kind in KINDS:
                keras.utils.set_random_seed(0)
                steps[kind] = make_step(build(kind, num_classes, dim),
                                        args.steps)
                jax.block_until_ready(steps[kind](features, labels))
            times = {kind: [] for kind in KINDS}
            for _ in range(args.rounds):
                for kind, step in steps.items():
                    start = time.perf_counter()
                    jax.block_until_ready(step(features, labels))
                    times[kind].append(
                        (time.perf_counter() - start) / args.steps)
            best = {k: min(v) for k, v in times.items()}
            row = {
                "classes": num_classes, "dim": dim, "batch": batch,
                "min_s": best, "times_s": times,
                "ratio_normalized_to_dense": best["normalized"]
                / best["dense"],
                "ratio_wsoftmax_to_dense": best["wsoftmax"] / best["dense"],
                "matmul_floor": matmul_floor(batch, num_classes, dim),
            }
            rows.append(row)
            print(f"{num_classes:5d} {dim:4d} {batch:4d} "
                  f"{row['ratio_normalized_to_dense']:10.2f} "
                  f"{row['ratio_wsoftmax_to_dense']:9.2f} "
                  f"{row['matmul_floor']:6.2f} "
                  f"{best['dense'] * 1e3:8.3f}", flush=True)
    output = {
        "description": "WSoftmaxHead / Dense training-step time on JAX "
        "(jax.jit, fori_loop of --steps steps); fastest of interleaved "
        "rounds in one run",
        "command": " ".join([os.path.basename(sys.executable)] + sys.argv),
        "machine": {
            "platform": platform.platform(), "jax": jax.__version__,
            "keras": keras.__version__,
            "devices": [str(d) for d in jax.devices()],
        },
        "rows": rows,
    }
    if args.output:
        pathlib.Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        with open(args.output, "w") as f:
            json.dump(output, f, indent=2)
    return output


if __name__ == "__main__":
    main()
