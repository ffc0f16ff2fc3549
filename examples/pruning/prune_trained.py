"""Prune a trained model in one call, fine-tune it, print the report.

Trains a small CNN on Fashion-MNIST (Debian's offline IDX files; sklearn's
digits when they are missing) for a few epochs, prunes it to half its
multiply-adds with `keras_dynfilt.pruning.prune` (first-order Taylor
importance from a few batches, units ranked globally, every layer keeping
a multiple of 8 channels), checks that the masked and the compacted model
agree, fine-tunes the smaller model and prints the report and the
accuracies. Writes `results.json` into `--output-dir`.

    python examples/pruning/prune_trained.py --epochs 2 \
        --output-dir runs/prune_trained
"""

import argparse
import gzip
import json
import os
import pathlib
import time

import keras
import numpy as np

import keras_dynfilt
from keras_dynfilt import pruning

FASHION_MNIST = "/usr/share/datasets/fashion-mnist"


def read_idx(path):
    """A gzipped IDX file (images or labels) as a NumPy array."""
    with gzip.open(path, "rb") as f:
        data = f.read()
    dims = data[3]
    shape = tuple(
        int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims)
    )
    return np.frombuffer(data, np.uint8, offset=4 + 4 * dims).reshape(shape)


def load(data_dir, dataset, train_size, test_size, seed):
    """`(x_train, y_train), (x_test, y_test)`, float32 images in [0, 1]."""
    if dataset == "auto":
        exists = os.path.isdir(data_dir)
        dataset = "fashion_mnist" if exists else "digits"
    if dataset == "fashion_mnist":
        d = pathlib.Path(data_dir)
        x = read_idx(d / "train-images-idx3-ubyte.gz")
        y = read_idx(d / "train-labels-idx1-ubyte.gz")
        x_test = read_idx(d / "t10k-images-idx3-ubyte.gz")
        y_test = read_idx(d / "t10k-labels-idx1-ubyte.gz")
    else:
        from sklearn.datasets import load_digits

        digits = load_digits()
        x = (digits.images * 16).astype(np.uint8)
        y = digits.target
        x, x_test, y, y_test = x[:1500], x[1500:], y[:1500], y[1500:]
    rng = np.random.default_rng(seed)
    train = rng.permutation(len(x))[:train_size]
    test = rng.permutation(len(x_test))[:test_size]

    def prepare(images):
        return (images.astype("float32") / 255.0)[..., None]

    return (
        (prepare(x[train]), y[train].astype("int32")),
        (prepare(x_test[test]), y_test[test].astype("int32")),
        dataset,
    )


def build(input_shape, num_classes=10):
    inputs = keras.Input(input_shape)
    x = inputs
    for i, (filters, stride) in enumerate([(16, 2), (32, 1), (32, 2),
                                           (64, 1)]):
        x = keras.layers.Conv2D(filters, 3, strides=stride, padding="same",
                                use_bias=False, name=f"conv{i}")(x)
        # A short run: BN statistics must follow the weights quickly.
        x = keras.layers.BatchNormalization(momentum=0.9, name=f"bn{i}")(x)
        x = keras.layers.ReLU()(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(num_classes, name="head")(x)
    return keras.Model(inputs, outputs, name="small_cnn")


def compile_model(model, learning_rate):
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return model


def accuracy(model, x, y):
    return float(model.evaluate(x, y, verbose=0, return_dict=True)[
        "accuracy"])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", default="auto",
                        choices=["auto", "fashion_mnist", "digits"])
    parser.add_argument("--data-dir", default=FASHION_MNIST)
    parser.add_argument("--train-size", type=int, default=6000)
    parser.add_argument("--test-size", type=int, default=2000)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--finetune-epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--learning-rate", type=float, default=2e-3)
    parser.add_argument("--target-macs", type=float, default=0.5)
    parser.add_argument("--criterion", default="taylor")
    parser.add_argument("--scope", default="global")
    parser.add_argument("--round-to", type=int, default=8)
    parser.add_argument("--steps-per-epoch", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output-dir", default="runs/prune_trained")
    args = parser.parse_args()

    keras.utils.set_random_seed(args.seed)
    (x, y), (x_test, y_test), dataset = load(
        args.data_dir, args.dataset, args.train_size, args.test_size,
        args.seed,
    )
    fit_kwargs = dict(batch_size=args.batch_size, verbose=2,
                      steps_per_epoch=args.steps_per_epoch)
    model = compile_model(build(x.shape[1:]), args.learning_rate)
    start = time.perf_counter()
    model.fit(x, y, epochs=args.epochs, **fit_kwargs)
    train_seconds = time.perf_counter() - start
    base = accuracy(model, x_test, y_test)

    small, report = pruning.prune(
        model,
        target_macs=args.target_macs,
        criterion=args.criterion,
        scope=args.scope,
        round_to=args.round_to,
        data=(x, y),
    )
    # prune left `model` masked: it must compute what `small` computes.
    gap = float(np.max(np.abs(
        keras.ops.convert_to_numpy(model(x_test[:256]))
        - keras.ops.convert_to_numpy(small(x_test[:256]))
    )))
    pruned = accuracy(small, x_test, y_test)
    small.fit(x, y, epochs=args.finetune_epochs, **fit_kwargs)
    finetuned = accuracy(small, x_test, y_test)

    print(report)
    print(f"masked vs compacted, max |difference|: {gap:.2e}")
    print(f"test accuracy: base {base:.4f}, pruned {pruned:.4f}, "
          f"fine-tuned {finetuned:.4f}")
    out = pathlib.Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    results = {
        "arguments": vars(args),
        "dataset": dataset,
        "versions": {"keras": keras.__version__,
                     "keras_dynfilt": keras_dynfilt.__version__,
                     "backend": keras.backend.backend()},
        "train_seconds": train_seconds,
        "accuracy": {"base": base, "pruned": pruned, "finetuned": finetuned},
        "masked_vs_compacted_max_abs": gap,
        "report": report.as_dict(),
    }
    (out / "results.json").write_text(json.dumps(results, indent=2))
    print(f"wrote {out / 'results.json'}")


if __name__ == "__main__":
    main()
