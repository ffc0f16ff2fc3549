"""The NumPy data path of the backends without tf.data (JAX, PyTorch).

`read_idx`, `ArrayBatches` and the array loaders need no TensorFlow, so
they are tested on every backend; `load_image_data` takes this path on
the backends other than TensorFlow.
"""

import gzip
import os

import keras
import numpy as np
import pytest

from keras_dynfilt.training import datasets
from keras_dynfilt.training.datasets import (
    DEBIAN_FASHION_MNIST,
    ArrayBatches,
    load_image_data,
    numpy_split,
    read_idx,
)

needs_fashion_mnist = pytest.mark.skipif(
    not os.path.isdir(DEBIAN_FASHION_MNIST),
    reason="Debian's dataset-fashion-mnist is not installed",
)
not_tensorflow = pytest.mark.skipif(
    keras.backend.backend() == "tensorflow",
    reason="TensorFlow's load_image_data is tf.data (test_datasets.py)",
)


def _write_idx(path, array):
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(
        int(d).to_bytes(4, "big") for d in array.shape
    )
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_read_idx_round_trip(tmp_path, suffix):
    array = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    _write_idx(tmp_path / f"a{suffix}", array)
    np.testing.assert_array_equal(read_idx(tmp_path / f"a{suffix}"), array)


def test_read_idx_rejects_other_files(tmp_path):
    (tmp_path / "x").write_bytes(b"PK\x03\x04rest")
    with pytest.raises(ValueError, match=r"not an IDX file.*50 4b 03 04"):
        read_idx(tmp_path / "x")
    _write_idx(tmp_path / "short", np.zeros((2, 2), np.uint8))
    raw = (tmp_path / "short").read_bytes()
    (tmp_path / "short").write_bytes(raw[:-1])
    with pytest.raises(ValueError, match=r"holds 3 values.*\(2, 2\)"):
        read_idx(tmp_path / "short")


def test_array_batches_reshuffle_each_pass_and_repeat():
    images = np.arange(10, dtype=np.uint8).reshape(10, 1, 1, 1)
    labels = np.arange(10)
    data = ArrayBatches(images, labels, batch_size=4, seed=3)
    assert data.num_batches == 3
    first = np.concatenate([y for _, y in data])
    second = np.concatenate([y for _, y in data])
    assert sorted(first) == sorted(second) == list(range(10))
    assert not np.array_equal(first, second)
    x, y = data[0]
    assert x.dtype == np.float32 and y.dtype == np.int32
    np.testing.assert_allclose(x[:, 0, 0, 0] * 255, y)
    # Same seed, same order: runs repeat.
    again = ArrayBatches(images, labels, batch_size=4, seed=3)
    np.testing.assert_array_equal(
        np.concatenate([y for _, y in again]), first
    )
    endless = data.repeat()
    assert endless.num_batches is None
    sizes = [len(endless[i][1]) for i in range(7)]
    assert sizes == [4, 4, 2, 4, 4, 2, 4]
    assert data.take(2).num_batches == 2
    assert len(list(data.take(2))) == 2


def test_array_batches_multiple_and_maps():
    images = np.zeros((7, 2, 2, 1), np.uint8)
    data = ArrayBatches(
        images, np.arange(7), batch_size=4, multiple=2,
        augment=lambda x, y: (x + 1.0, y),
        map_fn=lambda x, y: (x, {"a": y, "b": 2 * y}),
    )
    batches = list(data)
    assert [len(b[1]["a"]) for b in batches] == [4, 2]
    np.testing.assert_array_equal(batches[1][1]["b"], [8, 10])
    assert float(batches[0][0].min()) == 1.0


def test_digits_arrays_match_the_tf_pipeline_split():
    x_train, y_train, x_test, y_test, source = datasets._load_arrays(
        "digits", None
    )
    assert source == "sklearn"
    assert (len(x_train), len(x_test)) == (1437, 360)
    assert x_train.shape[1:] == (8, 8, 1) and x_train.dtype == np.uint8
    assert np.bincount(y_test).min() >= 35  # stratified


@needs_fashion_mnist
def test_fashion_mnist_from_the_debian_idx_files():
    x_train, y_train, x_test, y_test, source = datasets._load_arrays(
        "fashion_mnist", DEBIAN_FASHION_MNIST
    )
    assert x_train.shape == (60000, 28, 28, 1)
    assert x_test.shape == (10000, 28, 28, 1)
    assert source == f"local:{DEBIAN_FASHION_MNIST}"
    np.testing.assert_array_equal(np.bincount(y_test), [1000] * 10)
    np.testing.assert_array_equal(np.bincount(y_train), [6000] * 10)


@pytest.mark.tensorflow
@needs_fashion_mnist
def test_idx_reader_matches_the_tfds_builder():
    # The same test split, image for image, as tfds's own builder reads.
    x_train, y_train, x_test, y_test, _ = datasets._load_arrays(
        "fashion_mnist", DEBIAN_FASHION_MNIST
    )
    data = load_image_data(
        "fashion_mnist", batch_size=1000, data_dir=DEBIAN_FASHION_MNIST
    )
    images, labels = numpy_split(data, "test")
    assert images.shape == x_test.shape

    def by_content(images, labels):
        # tfds stores the examples in its own order: compare as multisets.
        pixels = np.round(images.reshape(len(images), -1)).astype(np.uint8)
        rows = np.concatenate([pixels, labels[:, None].astype(np.uint8)], 1)
        return rows[np.lexsort(rows.T[::-1])]

    np.testing.assert_array_equal(
        by_content(images * 255.0, labels), by_content(x_test, y_test)
    )


def test_cifar10_binary_archive(tmp_path):
    import io
    import tarfile

    rng = np.random.default_rng(0)

    def records(n):
        return np.concatenate(
            [rng.integers(0, 10, (n, 1)), rng.integers(0, 256, (n, 3072))],
            axis=1,
        ).astype(np.uint8)

    parts = {f"data_batch_{i}.bin": records(3) for i in range(1, 6)}
    parts["test_batch.bin"] = records(2)
    with tarfile.open(tmp_path / "cifar-10-binary.tar.gz", "w:gz") as tar:
        for name, array in parts.items():
            info = tarfile.TarInfo(f"cifar-10-batches-bin/{name}")
            info.size = array.nbytes
            tar.addfile(info, io.BytesIO(array.tobytes()))
    x_train, y_train, x_test, y_test, _ = datasets._load_arrays(
        "cifar10", str(tmp_path)
    )
    assert x_train.shape == (15, 32, 32, 3) and x_test.shape == (2, 32, 32, 3)
    first = parts["data_batch_1.bin"][0]
    assert y_train[0] == first[0]
    # Channel-first records become (H, W, C) images.
    np.testing.assert_array_equal(x_train[0, 0, 1], first[1:][[1, 1025, 2049]])


@not_tensorflow
def test_load_image_data_is_numpy_here():
    data = load_image_data("digits", batch_size=32, seed=1, limit_train=100)
    assert isinstance(data.train, ArrayBatches)
    assert (data.num_train, data.num_test) == (100, 360)
    assert data.input_shape == (8, 8, 1) and data.num_classes == 10
    x, y = data.train[0]
    assert x.shape == (32, 8, 8, 1) and 0 <= x.min() and x.max() <= 1
    images, labels = numpy_split(data, "test")
    assert images.shape == (360, 8, 8, 1) and labels.shape == (360,)


@not_tensorflow
def test_no_local_files_and_no_tfds_says_what_to_do(monkeypatch):
    monkeypatch.setattr(datasets, "default_data_dir", lambda name: None)
    try:
        import tensorflow_datasets  # noqa: F401
    except ImportError:
        with pytest.raises(RuntimeError, match=r"--data-dir.*digits"):
            load_image_data("mnist", batch_size=8)
    else:
        pytest.skip("tensorflow-datasets is installed here")
