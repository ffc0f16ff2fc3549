"""Data, tasks and the primary networks shared by the cross-task examples.

The *primary* networks are trained on Fashion-MNIST's ten garment classes
(`train_primary.py`). The *satellite* tasks are ones they were not trained
for, built from images they never saw (Fashion-MNIST's test split, or
scikit-learn's digits):

- `footwear`: binary, class in {5, 7, 9} (sandal, sneaker, ankle boot);
- `upper_body`: binary, class in {0, 2, 4, 6} (t-shirt, pullover, coat,
  shirt);
- `rotation`: ordinal, the angle in degrees (uniform in [-90, 90)) of an
  image rotated with the NDDR example's `rotate`, binned into 9 bins of 20
  degrees as in head pose;
- `digits`: categorical, scikit-learn's 8x8 digits upsampled to 28x28.

Each task's data is split at random into train / validation / test
(60 / 20 / 20) by a partition seed; the paper averages random partitions.
"""

import dataclasses
import importlib.util
import math
import os

import keras
import numpy as np

import keras_dynfilt
from keras_dynfilt import training

TASKS = ("footwear", "upper_body", "rotation", "digits")
TASK_KIND = {
    "footwear": "binary",
    "upper_body": "binary",
    "rotation": "ordinal",
    "digits": "categorical",
}
ROTATION_BINS = np.linspace(-90.0, 90.0, 10)[1:-1]  # 9 bins of 20 degrees
ARCHS = ("vgg", "light_cnn")


def vgg_style(input_shape, num_classes, widths=(16, 32, 64), dense=512,
              dropout=0.5, name="vgg_style"):
    """A small VGG: blocks of two 3x3 conv-BN-ReLU and a max-pool, then a
    large fully connected layer (VGG-Face's fc6/fc7 role) and the logits."""
    inputs = keras.Input(input_shape, name="image")
    x = inputs
    for b, width in enumerate(widths, start=1):
        for c in (1, 2):
            x = keras.layers.Conv2D(
                width, 3, padding="same", use_bias=False,
                name=f"block{b}_conv{c}")(x)
            x = keras.layers.BatchNormalization(name=f"block{b}_bn{c}")(x)
            x = keras.layers.ReLU(name=f"block{b}_relu{c}")(x)
        x = keras.layers.MaxPooling2D(name=f"block{b}_pool")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dense(dense, activation="relu", name="fc1")(x)
    x = keras.layers.Dropout(dropout, name="dropout")(x)
    outputs = keras.layers.Dense(num_classes, name="logits")(x)
    return keras.Model(inputs, outputs, name=name)


def build_primary(arch, input_shape=(28, 28, 1), num_classes=10,
                  width_multiplier=0.5):
    if arch == "vgg":
        return vgg_style(input_shape, num_classes)
    if arch == "light_cnn":
        return keras_dynfilt.models.light_cnn(
            input_shape, num_classes, width_multiplier=width_multiplier,
            dropout=0.3)
    raise ValueError(f"`arch` must be one of {ARCHS}. Received: {arch!r}")


def _nddr_rotate():
    # The NDDR example's rotation (examples/nddr/train.py), reused as is.
    path = os.path.join(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__))), "nddr", "train.py")
    spec = importlib.util.spec_from_file_location("_nddr_train", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.rotate


def rotate_images(images, degrees):
    """Rotates (N, H, W, C) float images by per-image angles in degrees."""
    import tensorflow as tf

    rotate = _nddr_rotate()
    fn = tf.function(lambda im, a: rotate(im, a))
    return np.stack([
        fn(tf.constant(im), tf.constant(math.radians(a), tf.float32)).numpy()
        for im, a in zip(images, degrees)
    ])


def fashion_mnist(data_dir=None, limit_train=None, seed=0, batch_size=256):
    """Fashion-MNIST through the shared harness, as NumPy arrays."""
    data = training.load_image_data(
        "fashion_mnist", batch_size=batch_size, data_dir=data_dir,
        seed=seed, limit_train=limit_train)
    return data, training.numpy_split(data, "train"), training.numpy_split(
        data, "test")


def digits_images(size=28):
    """scikit-learn's digits in [0, 1], upsampled (bilinear) to size x size."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = (digits.images[..., None] / 16.0).astype("float32")
    up = keras.ops.image.resize(images, (size, size),
                                interpolation="bilinear")
    return np.clip(keras.ops.convert_to_numpy(up), 0, 1), digits.target


@dataclasses.dataclass
class TaskData:
    """One satellite task, split into train / validation / test."""

    name: str
    kind: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    bins: np.ndarray = None

    @property
    def num_outputs(self):
        return int(self.y_train.max()) + 1 if self.kind == "categorical" \
            else 1

    def class_labels(self, y):
        """Integer class labels for accuracy (bins for ordinal tasks)."""
        if self.kind == "ordinal":
            return np.digitize(y, self.bins)
        return np.asarray(y).astype(int)

    @property
    def num_classes(self):
        if self.kind == "ordinal":
            return len(self.bins) + 1
        return 2 if self.kind == "binary" else self.num_outputs


def _partition(n, seed, fractions=(0.6, 0.2)):
    order = np.random.default_rng(seed).permutation(n)
    a = int(round(fractions[0] * n))
    b = a + int(round(fractions[1] * n))
    return order[:a], order[a:b], order[b:]


def satellite_task(name, pool, partition_seed, size):
    """The task `name` on `size` images of `pool`, split by the seed.

    Args:
        name: One of `TASKS`.
        pool: `(images, labels)` of Fashion-MNIST images the primary
            network never saw (its test split); unused for `digits`.
        partition_seed: Seed of the random subset and partition.
        size: Number of images (all 1797 digits when larger).
    """
    rng = np.random.default_rng(1000 + partition_seed)
    bins = None
    if name == "digits":
        x, y = digits_images(pool[0].shape[1])
        idx = rng.permutation(len(x))[:size]
        x, y = x[idx], y[idx].astype("int64")
    else:
        images, labels = pool
        idx = rng.permutation(len(images))[:size]
        x, labels = images[idx], labels[idx]
        if name == "footwear":
            y = np.isin(labels, (5, 7, 9)).astype("float32")
        elif name == "upper_body":
            y = np.isin(labels, (0, 2, 4, 6)).astype("float32")
        elif name == "rotation":
            y = rng.uniform(-90.0, 90.0, len(x)).astype("float32")
            x = rotate_images(x, y)
            bins = ROTATION_BINS
        else:
            raise ValueError(f"Unknown task {name!r}; one of {TASKS}")
    train, val, test = _partition(len(x), partition_seed)
    return TaskData(name, TASK_KIND[name], x[train], y[train], x[val],
                    y[val], x[test], y[test], bins)


# Below this many test images one image moves the accuracy by more than
# half a point, and the spread between partitions hides any effect of a
# few points (measured: test splits of 12 and 60 images turned fine-tuning
# changes of one or two images into "0.917 -> 0.667").
MIN_MEANINGFUL_TEST = 200


def warn_if_small(task):
    """Prints a note when a task's splits are too small to mean much."""
    n_train, n_test = len(task.x_train), len(task.x_test)
    if n_test < MIN_MEANINGFUL_TEST:
        print(
            f"note: task {task.name} has {n_train} training and {n_test} "
            f"test images: one test image is {100 / n_test:.1f} points of "
            "accuracy, so differences of a few images (refit vs "
            "fine-tuned, probe vs transfer) are noise. Use --satellite-size "
            f"{int(MIN_MEANINGFUL_TEST / 0.2)} or more for a result.",
            flush=True,
        )
        return True
    return False


def task_accuracy(task, prediction, y, threshold=0.5):
    """Accuracy of raw linear outputs on a task (threshold / bins / argmax)."""
    prediction = np.asarray(prediction)
    if task.kind == "binary":
        return float(np.mean((prediction.ravel() > threshold) == (y > 0.5)))
    if task.kind == "ordinal":
        return float(np.mean(np.digitize(prediction.ravel(), task.bins)
                             == np.digitize(y, task.bins)))
    return float(np.mean(prediction.argmax(-1) == y))


def versions():
    import platform

    import sklearn

    return {
        "keras_dynfilt": keras_dynfilt.__version__,
        "keras": keras.__version__,
        "backend": keras.backend.backend(),
        "numpy": np.__version__,
        "scikit_learn": sklearn.__version__,
        "python": platform.python_version(),
    }


def add_common_flags(parser):
    """Flags shared by transfer.py and prune.py (besides the harness's)."""
    parser.add_argument("--primary", required=True,
                        help="the trained primary network (.keras) from "
                        "train_primary.py")
    parser.add_argument("--tasks", default=",".join(TASKS),
                        help=f"comma-separated, of {TASKS}")
    parser.add_argument("--partitions", default="0,1,2",
                        help="seeds of the random satellite partitions")
    parser.add_argument("--satellite-size", type=int, default=3000,
                        help="images per satellite task (digits: at most "
                        "1797)")
    return parser


def load_setup(args):
    """The primary network and the pool of images it never saw."""
    model = keras.saving.load_model(args.primary, safe_mode=True)
    if args.dataset == "digits":
        # Smoke runs: a primary network trained on digits; the satellite
        # pool is then the digits themselves, upsampled.
        x, y = digits_images(model.input_shape[1])
        pool = (x, y)
    else:
        _, _, pool = fashion_mnist(args.data_dir)
    tasks = [t for t in args.tasks.split(",") if t]
    for t in tasks:
        if t not in TASKS:
            raise ValueError(f"`--tasks`: unknown task {t!r}; one of {TASKS}")
    partitions = [int(s) for s in args.partitions.split(",") if s != ""]
    return model, pool, tasks, partitions


def frozen_base(model):
    """The primary network's convolutional part (up to its Flatten or global
    pooling), frozen: the body of the transfer-learning baseline."""
    for layer in model.layers:
        if isinstance(layer, (keras.layers.Flatten,
                              keras.layers.GlobalAveragePooling2D)):
            base = keras.Model(model.inputs[0], layer.output,
                               name="frozen_convs")
            base.trainable = False
            return base
    raise ValueError(f"{model.name} has no Flatten / global pooling layer")


def summarize(values):
    values = np.asarray([v for v in values if v is not None], np.float64)
    if not len(values):
        return None
    return {"mean": float(values.mean()), "std": float(values.std()),
            "n": int(len(values))}


def write_json(path, results):
    import json

    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "w") as f:
        json.dump(results, f, indent=2, default=_json_default)


def _json_default(value):
    if isinstance(value, (np.integer, np.floating, np.bool_)):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)
