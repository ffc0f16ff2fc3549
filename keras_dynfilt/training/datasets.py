"""Image-classification datasets, online and offline, on every backend.

`load_image_data` checks its arguments and picks the path of the backend:
on TensorFlow, `tf.data` pipelines (`tf_data`: tensorflow-datasets online,
or tfds's own builders fed from local files, `tfds_builders`); on JAX and
PyTorch, NumPy arrays batched by an `ArrayBatches` (`numpy_data`), with no
TensorFlow imported. IDX files are checked (`idx_files`) before either path
reads them.
"""

import os

import keras
import numpy as np

from keras_dynfilt._validation import check_int, check_positive_int
from keras_dynfilt.training.array_batches import ArrayBatches
from keras_dynfilt.training.idx_files import (
    IDX_FILES,
    check_idx_dir,
    check_idx_file,
    read_idx,
)
from keras_dynfilt.training.image_data import ImageData
from keras_dynfilt.training.numpy_data import (
    CLASS_NAMES,
    load_arrays,
    numpy_image_data,
)
from keras_dynfilt.training.tf_data import tf_image_data
from keras_dynfilt.training.tfds_builders import CACHE_ENV, OFFLINE_ENV

# Where Debian's `dataset-fashion-mnist` package puts the IDX files.
DEBIAN_FASHION_MNIST = "/usr/share/datasets/fashion-mnist"
TFDS_DATASETS = ("mnist", "fashion_mnist", "cifar10")
DATASETS = TFDS_DATASETS + ("digits",)


def resolve_dataset(name, data_dir=None):
    """Resolves `"auto"`: Fashion-MNIST when local files exist, else digits."""
    if name != "auto":
        return name
    if data_dir or os.path.isdir(DEBIAN_FASHION_MNIST):
        return "fashion_mnist"
    return "digits"


def default_data_dir(name):
    """The local folder used when `--data-dir` is not given, or None."""
    if name == "fashion_mnist" and os.path.isdir(DEBIAN_FASHION_MNIST):
        return DEBIAN_FASHION_MNIST
    return None


def _load_arrays(name, data_dir):
    """(x_train, y_train, x_test, y_test, source): the NumPy path's arrays."""
    return load_arrays(name, data_dir or default_data_dir(name))


def load_image_data(
    name,
    batch_size,
    data_dir=None,
    seed=0,
    map_fn=None,
    augment=None,
    shuffle_buffer=None,
    limit_train=None,
    batch_multiple=1,
):
    """Loads an image-classification dataset as batched pipelines.

    Images come as float32 in [0, 1] of shape `(H, W, C)`, labels as int32
    scalars. The training split is cached, shuffled (reshuffled every
    epoch), optionally augmented, mapped and batched by the *global* batch
    size; the test split is mapped and batched. On the TensorFlow backend
    both are prefetched `tf.data` pipelines and `map_fn` / `augment` see one
    example at a time; on the other backends they are `ArrayBatches`
    (`keras.utils.PyDataset`, no TensorFlow imported), `map_fn` / `augment`
    see NumPy batches, and each pass is a full permutation of the split
    (`shuffle_buffer` is a `tf.data` setting).

    Args:
        name: `"mnist"`, `"fashion_mnist"`, `"cifar10"` (tensorflow-datasets,
            or local files with `data_dir`), `"digits"` (scikit-learn's
            bundled 8x8 digits, always offline) or `"auto"` (Fashion-MNIST
            from Debian's package when installed, else digits).
        batch_size: Global batch size (all replicas together).
        data_dir: Folder with the files tfds would download (for MNIST and
            Fashion-MNIST the four IDX files, `.gz` or not; for CIFAR-10
            `cifar-10-binary.tar.gz`). `None` uses Debian's Fashion-MNIST
            folder when present, else tensorflow-datasets online.
        seed: Shuffle seed.
        map_fn: Optional `fn(image, label) -> element`, applied to both
            splits before batching (e.g. to build multi-task targets).
        augment: Optional `fn(image, label) -> (image, label)`, applied to
            the training split only, before `map_fn`.
        shuffle_buffer: Shuffle buffer size; defaults to the whole split.
        limit_train: Optional number of training examples to keep (for
            smoke tests and quick runs).
        batch_multiple: Non-TensorFlow backends: cut every batch down to a
            multiple of this (the data-parallel device count; a short last
            batch loses at most `batch_multiple - 1` examples).

    Returns:
        An `ImageData`.
    """
    # Every argument is checked before tf.data or tfds sees it.
    if not isinstance(name, str):
        raise TypeError(
            f"`name` must be a string. Received: name={name!r} of type "
            f"{type(name).__name__}"
        )
    name = resolve_dataset(name, data_dir)
    if name not in DATASETS:
        raise ValueError(
            f"`name` must be one of {list(DATASETS) + ['auto']}. "
            f"Received: name={name!r}"
        )
    check_positive_int(batch_size, "batch_size")
    check_int(seed, "seed", 0, 2**63 - 1)
    shuffle_buffer = check_int(
        shuffle_buffer, "shuffle_buffer", 1, None, allow_none=True
    )
    # 0 is not "no limit": it would silently keep the whole split.
    limit_train = check_int(
        limit_train, "limit_train", 1, None, allow_none=True
    )
    for argument, fn in (("map_fn", map_fn), ("augment", augment)):
        if fn is not None and not callable(fn):
            raise TypeError(
                f"`{argument}` must be None or a callable "
                f"`fn(image, label)`. Received: {argument}={fn!r}"
            )
    if data_dir is not None and (
        not isinstance(data_dir, (str, os.PathLike))
        or not os.path.isdir(data_dir)
    ):
        raise ValueError(
            "`data_dir` must be an existing folder. "
            f"Received: data_dir={data_dir!r}"
        )
    data_dir = data_dir or default_data_dir(name)
    if name in ("mnist", "fashion_mnist") and data_dir:
        check_idx_dir(data_dir)
    if keras.backend.backend() != "tensorflow":
        return numpy_image_data(
            name, batch_size, data_dir, seed, map_fn, augment, limit_train,
            batch_multiple,
        )
    return tf_image_data(
        name, batch_size, data_dir, seed, map_fn, augment, shuffle_buffer,
        limit_train,
    )


def numpy_split(data, split="test"):
    """Materialises one split of an `ImageData` as NumPy arrays."""
    dataset = getattr(data, split)
    xs, ys = [], []
    for x, y in dataset.as_numpy_iterator():
        xs.append(np.asarray(x))
        ys.append(np.asarray(y))
    return np.concatenate(xs), np.concatenate(ys)


__all__ = [
    "CACHE_ENV",
    "CLASS_NAMES",
    "DATASETS",
    "DEBIAN_FASHION_MNIST",
    "IDX_FILES",
    "OFFLINE_ENV",
    "TFDS_DATASETS",
    "ArrayBatches",
    "ImageData",
    "check_idx_dir",
    "check_idx_file",
    "default_data_dir",
    "load_image_data",
    "numpy_split",
    "read_idx",
    "resolve_dataset",
]
