"""The NumPy data path of the backends without `tf.data` (JAX, PyTorch).

Local files are read into NumPy (the IDX files of MNIST and Fashion-MNIST,
the binary archive of CIFAR-10, scikit-learn for digits) and batched by an
`ArrayBatches`; tensorflow-datasets serves online data only where
TensorFlow is installed. Nothing here imports TensorFlow.
"""

import os
import tarfile

import numpy as np

from keras_dynfilt.training.array_batches import ArrayBatches
from keras_dynfilt.training.idx_files import find_file, idx_arrays
from keras_dynfilt.training.image_data import ImageData
from keras_dynfilt.training.tfds_builders import tfds_arrays

# Class names as tensorflow-datasets gives them.
CLASS_NAMES = {
    "digits": [str(i) for i in range(10)],
    "mnist": [str(i) for i in range(10)],
    "fashion_mnist": [
        "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal",
        "Shirt", "Sneaker", "Bag", "Ankle boot",
    ],
    "cifar10": [
        "airplane", "automobile", "bird", "cat", "deer", "dog", "frog",
        "horse", "ship", "truck",
    ],
}


def digits_arrays():
    """scikit-learn's 8x8 digits as uint8 images, split 80/20 stratified."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = (digits.images[..., None] * 255.0 / 16.0).round().astype("uint8")
    x_train, x_test, y_train, y_test = train_test_split(
        images,
        digits.target,
        test_size=0.2,
        random_state=0,
        stratify=digits.target,
    )
    return x_train, y_train, x_test, y_test


def cifar10_arrays(source_dir):
    """CIFAR-10 from `cifar-10-binary.tar.gz` (records: label + 3x32x32)."""
    path = find_file(source_dir, "cifar-10-binary.tar")
    splits = {"train": [], "test": []}
    with tarfile.open(path) as archive:
        for member in sorted(archive.getmembers(), key=lambda m: m.name):
            name = os.path.basename(member.name)
            split = (
                "train" if name.startswith("data_batch")
                else "test" if name == "test_batch.bin" else None
            )
            if split:
                raw = archive.extractfile(member).read()
                splits[split].append(
                    np.frombuffer(raw, np.uint8).reshape(-1, 3073)
                )
    arrays = []
    for split in ("train", "test"):
        records = np.concatenate(splits[split])
        images = records[:, 1:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
        arrays += [images, records[:, 0].astype(np.int64)]
    return tuple(arrays)


def load_arrays(name, data_dir):
    """(x_train, y_train, x_test, y_test, source) as uint8 / int arrays.

    `data_dir` is the resolved folder (`None`: tensorflow-datasets online).
    """
    if name == "digits":
        return (*digits_arrays(), "sklearn")
    if data_dir is None:
        return (*tfds_arrays(name), "tfds")
    reader = cifar10_arrays if name == "cifar10" else idx_arrays
    return (*reader(data_dir), f"local:{os.path.abspath(data_dir)}")


def numpy_image_data(
    name, batch_size, data_dir, seed, map_fn, augment, limit_train, multiple
):
    """`load_image_data` on the backends without `tf.data`."""
    x_train, y_train, x_test, y_test, source = load_arrays(name, data_dir)
    if limit_train:
        x_train, y_train = x_train[:limit_train], y_train[:limit_train]
    names = list(CLASS_NAMES[name])
    return ImageData(
        train=ArrayBatches(
            x_train, y_train, batch_size, seed=seed, augment=augment,
            map_fn=map_fn, multiple=multiple,
        ),
        test=ArrayBatches(
            x_test, y_test, batch_size, map_fn=map_fn, multiple=multiple
        ),
        num_classes=len(names),
        input_shape=tuple(int(d) for d in x_train.shape[1:]),
        num_train=len(x_train),
        num_test=len(x_test),
        class_names=names,
        source=source,
        name=name,
    )
