"""The Keras + keras-dynfilt side of `torch_side_by_side.py`.

Run by the driver with the interpreter of the TensorFlow venv; imports
neither PyTorch nor Torch-Pruning. One thread (TensorFlow intra- and
inter-op threads 1), as the PyTorch side.
"""

import argparse
import os
import pathlib
import sys
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import side_by_side_common as common  # noqa: E402

LIBRARY = "keras"
REPEATS = {1: 30, 64: 5}


def set_threads():
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(1)
        tf.config.threading.set_inter_op_parallelism_threads(1)


class EpochBatches(keras.utils.PyDataset):
    """Batches in `common.epoch_order`: the PyTorch side's exact order."""

    def __init__(self, x, y, seed, epoch_offset=0, fraction=1.0):
        super().__init__(workers=1, use_multiprocessing=False)
        self.x, self.y, self.seed = x, y, seed
        self.batch = common.RECIPE["batch_size"]
        self.slices = common.epoch_batches(len(x), self.batch, fraction)
        self.offset = epoch_offset
        # Keras calls `on_epoch_begin` before each epoch, the first too.
        self.epoch = epoch_offset - 1
        self.order = None
        self.orders_used = []

    def on_epoch_begin(self):
        self.epoch += 1
        self.order = None

    def __len__(self):
        return len(self.slices)

    def __getitem__(self, index):
        if self.order is None:
            # Keras may read a batch for the input signature before the
            # first epoch begins: that is epoch `epoch_offset`'s order.
            epoch = max(self.epoch, self.offset)
            self.order = common.epoch_order(self.seed, epoch, len(self.x))
            self.orders_used.append(epoch)
        idx = self.order[self.slices[index]]
        return self.x[idx], self.y[idx]


class EpochTimes(keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
        self.times = []

    def on_epoch_begin(self, epoch, logs=None):
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.times.append(time.perf_counter() - self.start)
        common.log(
            f"keras epoch {epoch + 1} loss {logs.get('loss', 0):.4f} "
            f"{self.times[-1]:.0f}s"
        )


def build(depth, seed):
    import keras_dynfilt

    keras.utils.set_random_seed(seed)
    return keras_dynfilt.models.resnet_cifar(
        depth, num_classes=10, input_shape=(28, 28, 1), shortcut="B"
    )


def compile_for(model, base_lr, steps):
    """The recipe of `common.RECIPE`: decoupled decay on kernels only."""
    schedule = keras.optimizers.schedules.CosineDecay(base_lr, steps)
    optimizer = keras.optimizers.SGD(
        schedule, momentum=0.9, nesterov=True,
        weight_decay=common.RECIPE["weight_decay"],
    )
    optimizer.exclude_from_weight_decay(var_names=["gamma", "beta", "bias"])
    model.compile(
        optimizer=optimizer,
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )


def train(
    model, x, y, seed, epochs, base_lr, epoch_offset=0, callbacks=(),
    fraction=1.0,
):
    data = EpochBatches(x, y, seed, epoch_offset, fraction)
    compile_for(model, base_lr, epochs * len(data))
    timer = EpochTimes()
    model.fit(
        data, epochs=epochs, verbose=0, callbacks=[*callbacks, timer]
    )
    # PyDataset calls on_epoch_begin once per epoch; check the order used
    # was the one the PyTorch side draws.
    expected = list(range(epoch_offset, epoch_offset + epochs))
    if sorted(set(data.orders_used)) != expected:
        raise RuntimeError(
            f"Batch orders of epochs {data.orders_used}, expected {expected}"
        )
    return timer.times


def accuracy(model, x, y):
    logits = model.predict(x, batch_size=1000, verbose=0)
    return float((logits.argmax(-1) == y).mean())


def counts(model):
    """keras-dynfilt's own counter: MACs per sample and parameters."""
    import keras_dynfilt

    cost = keras_dynfilt.pruning.model_cost(model)
    trainable = int(sum(np.prod(w.shape) for w in model.trainable_weights))
    return {
        "macs": int(cost.macs),
        "params": int(cost.params),
        "trainable_params": trainable,
    }


def latency(model, repeats):
    out = {}
    for batch in (1, 64):
        x = np.random.default_rng(0).standard_normal(
            (batch, 28, 28, 1)
        ).astype(np.float32)
        out[f"batch_{batch}"] = common.time_calls(
            lambda x=x: model.predict_on_batch(x), repeats[batch]
        )
    return out


def onnx_measures(model, path, repeats):
    x = np.random.default_rng(1).standard_normal((8, 28, 28, 1))
    x = x.astype(np.float32)
    expected = model.predict_on_batch(x)  # export needs a called model
    model.export(str(path), format="onnx", verbose=False)
    return {
        "max_abs_diff_vs_keras": common.onnx_difference(
            str(path), x, expected
        ),
        "cost": common.onnx_cost(str(path)),
        "latency": {
            f"batch_{b}": common.onnx_latency(
                str(path), b, (28, 28, 1), repeats[b]
            )
            for b in (1, 64)
        },
    }


def stage_base(args, data):
    x, y, xt, yt = data
    model = build(args.depth, args.seed)
    start = time.perf_counter()
    times = train(
        model, x, y, args.seed, args.epochs, common.RECIPE["lr"],
        fraction=args.epoch_fraction,
    )
    model.save(args.ckpt / "base.keras")
    result = {
        "library": LIBRARY,
        "keras": keras.__version__,
        "backend": keras.backend.backend(),
        "epochs": args.epochs,
        "epoch_fraction": args.epoch_fraction,
        "epoch_seconds": times,
        "train_seconds": time.perf_counter() - start,
        "accuracy": accuracy(model, xt, yt),
        "cost": counts(model),
        "latency": latency(model, REPEATS),
        "onnx": onnx_measures(model, args.ckpt / "base.onnx", REPEATS),
    }
    common.write_json(args.parts / "base.json", result)
    common.log("keras base", result["accuracy"])


PRUNE_ARGS = {
    "l2_local": {"criterion": "l2", "scope": "local"},
    "l2_global": {"criterion": "l2", "scope": "global"},
    "taylor": {"criterion": "taylor", "scope": "local"},
}


def prune_once(model, method, taylor_data):
    """keras-dynfilt's one call; returns (small model, report, seconds).

    The time covers the whole call (grouping, ranking, the MACs-target
    search, Taylor gradients for `"taylor"`, masking and compaction).
    """
    from keras_dynfilt.pruning import prune

    kwargs = dict(PRUNE_ARGS[method], target_macs=0.5)
    if method == "taylor":
        # Taylor ranks from the loss's gradients: the model needs its loss.
        compile_for(model, common.RECIPE["lr"], 1)
        kwargs.update(
            data=taylor_data,
            batch_size=common.RECIPE["batch_size"],
            batches=common.RECIPE["taylor_batches"],
        )
    start = time.perf_counter()
    small, report = prune(model, **kwargs)
    return small, report, time.perf_counter() - start


def report_summary(report):
    """What the pruner's report says (targets, reached, its own time)."""
    out = {}
    for key in ("criterion", "scope", "macs_before", "macs_after",
                "params_before", "params_after", "target", "reached",
                "seconds"):
        value = getattr(report, key, None)
        if isinstance(value, (int, float, str, dict)):
            out[key] = value
    return out


def load(path):
    import keras_dynfilt  # noqa: F401 - registers the library's layers

    return keras.saving.load_model(path, compile=False)


def stage_prune(args, data):
    x, y, xt, yt = data
    taylor = common.taylor_batches(
        x, y, args.seed, common.RECIPE["batch_size"],
        common.RECIPE["taylor_batches"],
    )
    reference = common.read_json(args.parts / "base.json")
    for method in args.methods:
        part = args.parts / f"prune_{method}.json"
        if part.exists():
            continue
        common.log(f"keras prune {method}")
        keras.utils.set_random_seed(args.seed)
        base = load(args.ckpt / "base.keras")
        small, report, seconds = prune_once(base, method, taylor)
        pruned_acc = accuracy(small, xt, yt)
        ft = train(
            small, x, y, args.seed, args.finetune_epochs,
            common.RECIPE["finetune_lr"], epoch_offset=1000,
            fraction=args.epoch_fraction,
        )
        small.save(args.ckpt / f"{method}.keras")
        cost = counts(small)
        import keras_dynfilt

        result = {
            "keras_dynfilt": os.path.dirname(keras_dynfilt.__file__),
            "prune_kwargs": dict(PRUNE_ARGS[method], target_macs=0.5),
            "prune_seconds": seconds,
            "report": report_summary(report),
            "accuracy_pruned": pruned_acc,
            "finetune_epoch_seconds": ft,
            "accuracy_finetuned": accuracy(small, xt, yt),
            "cost": cost,
            "macs_fraction": cost["macs"] / reference["cost"]["macs"],
            "params_fraction": cost["trainable_params"]
            / reference["cost"]["trainable_params"],
            "latency": latency(small, REPEATS),
            "onnx": onnx_measures(
                small, args.ckpt / f"{method}.onnx", REPEATS
            ),
        }
        common.write_json(part, result)
        common.log("keras", method, result["accuracy_finetuned"])


SFP_RATE = 0.4


def stage_sfp(args, data):
    """Soft Filter Pruning from scratch at 40%, same epoch budget.

    `epochs + finetune_epochs` epochs (the others' base plus fine-tuning),
    one cosine schedule, the final mask held fixed for the last
    `finetune_epochs`; then `compact`.
    """
    import keras_dynfilt

    x, y, xt, yt = data
    model = build(args.depth, args.seed)
    full = counts(model)
    epochs = args.epochs + args.finetune_epochs
    masked_path = args.ckpt / "sfp_masked.keras"
    if masked_path.exists():  # resumed after the training finished
        model = load(masked_path)
        trained = common.read_json(args.parts / "sfp_train.json")
    else:
        sfp = keras_dynfilt.callbacks.SoftFilterPruning(
            pruning_rate=SFP_RATE, criterion="l2",
            finetune_epochs=args.finetune_epochs,
        )
        start = time.perf_counter()
        times = train(
            model, x, y, args.seed, epochs, common.RECIPE["lr"],
            callbacks=[sfp], fraction=args.epoch_fraction,
        )
        trained = {
            "epoch_seconds": times,
            "train_seconds": time.perf_counter() - start,
        }
        model.save(masked_path)
        common.write_json(args.parts / "sfp_train.json", trained)
    masked_acc = accuracy(model, xt, yt)
    start = time.perf_counter()
    small = keras_dynfilt.pruning.compact(model)
    compact_seconds = time.perf_counter() - start
    small.save(args.ckpt / "sfp.keras")
    cost = counts(small)
    result = {
        "pruning_rate": SFP_RATE,
        "epochs": epochs,
        "epoch_fraction": args.epoch_fraction,
        "finetune_epochs": args.finetune_epochs,
        **trained,
        "prune_seconds": compact_seconds,
        "accuracy_masked": masked_acc,
        "accuracy_finetuned": accuracy(small, xt, yt),
        "cost": cost,
        "macs_fraction": cost["macs"] / full["macs"],
        "params_fraction": cost["trainable_params"] / full["trainable_params"],
        "latency": latency(small, REPEATS),
        "onnx": onnx_measures(small, args.ckpt / "sfp.onnx", REPEATS),
    }
    common.write_json(args.parts / "sfp.json", result)
    common.log("keras sfp", result["accuracy_finetuned"])


def stage_latency(args, data):
    """Times every saved model again, one after another (quieter moment)."""
    out = {"loadavg_before": os.getloadavg()}
    for name in ["base", *common.METHODS, "sfp"]:
        path = args.ckpt / f"{name}.keras"
        if not path.exists():
            continue
        model = load(path)
        out[name] = {
            "latency": latency(model, REPEATS),
            "onnx_latency": {
                f"batch_{b}": common.onnx_latency(
                    str(args.ckpt / f"{name}.onnx"), b, (28, 28, 1),
                    REPEATS[b],
                )
                for b in (1, 64)
            },
        }
        common.log("keras latency", name)
    out["loadavg_after"] = os.getloadavg()
    common.write_json(args.parts / "latency.json", out)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--stage", choices=("base", "prune", "sfp", "latency"),
        required=True,
    )
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--depth", type=int, default=20)
    parser.add_argument("--epochs", type=int, required=True)
    parser.add_argument("--finetune-epochs", type=int, default=1)
    parser.add_argument("--epoch-fraction", type=float, default=1.0)
    parser.add_argument("--work", required=True)
    parser.add_argument("--methods", default=",".join(common.METHODS))
    parser.add_argument("--limit", type=int, default=0,
                        help="use the first N training images (smoke runs)")
    args = parser.parse_args(argv)
    args.methods = args.methods.split(",")
    set_threads()
    args.ckpt = pathlib.Path(args.work) / "keras" / f"seed_{args.seed}"
    args.parts = args.ckpt
    args.ckpt.mkdir(parents=True, exist_ok=True)
    from keras_dynfilt.training.datasets import read_idx

    x, y, xt, yt = common.load_fashion_mnist(reader=read_idx)
    if args.limit:
        x, y = x[: args.limit], y[: args.limit]
        xt, yt = xt[: args.limit], yt[: args.limit]
    stages = {
        "base": stage_base, "prune": stage_prune, "sfp": stage_sfp,
        "latency": stage_latency,
    }
    stages[args.stage](args, (x, y, xt, yt))


if __name__ == "__main__":
    main()
