import os
import time

import numpy as np
import pytest

pytestmark = pytest.mark.tensorflow

tf = pytest.importorskip("tensorflow")
tfds = pytest.importorskip("tensorflow_datasets")

from keras_dynfilt.training import datasets, tfds_builders  # noqa: E402
from keras_dynfilt.training.datasets import (  # noqa: E402
    DEBIAN_FASHION_MNIST,
    load_image_data,
)

needs_fashion_mnist = pytest.mark.skipif(
    not os.path.isdir(DEBIAN_FASHION_MNIST),
    reason="Debian's dataset-fashion-mnist is not installed",
)


def test_digits_pipeline():
    data = load_image_data("digits", batch_size=32, seed=1)
    assert (data.num_train, data.num_test) == (1437, 360)
    assert data.input_shape == (8, 8, 1) and data.num_classes == 10
    x, y = next(iter(data.train))
    assert x.shape == (32, 8, 8, 1) and x.dtype == tf.float32
    assert y.dtype == tf.int32
    assert 0.0 <= float(tf.reduce_min(x)) and float(tf.reduce_max(x)) <= 1.0
    total = sum(int(b[0].shape[0]) for b in data.test)
    assert total == 360


def test_training_split_is_reshuffled_each_epoch():
    data = load_image_data("digits", batch_size=1437, seed=3)
    first = next(iter(data.train))[1].numpy()
    second = next(iter(data.train))[1].numpy()
    assert not np.array_equal(first, second)
    np.testing.assert_array_equal(np.sort(first), np.sort(second))


def test_map_fn_and_augment_are_applied():
    def augment(image, label):
        return tf.image.flip_left_right(image), label

    def two_tasks(image, label):
        return image, {"class": label, "double": 2 * label}

    data = load_image_data(
        "digits", batch_size=16, map_fn=two_tasks, augment=augment
    )
    x, y = next(iter(data.train))
    np.testing.assert_array_equal(y["double"], 2 * y["class"])
    x, y = next(iter(data.test))
    assert set(y) == {"class", "double"}


@needs_fashion_mnist
def test_fashion_mnist_from_debian_files_through_tfds_builder(tmp_path):
    # Same tfds builder as online; only the file source is local.
    data = load_image_data(
        "fashion_mnist", batch_size=256, data_dir=DEBIAN_FASHION_MNIST
    )
    assert (data.num_train, data.num_test) == (60000, 10000)
    assert data.input_shape == (28, 28, 1) and data.num_classes == 10
    assert data.class_names[0] == "T-shirt/top"
    assert data.source == f"local:{DEBIAN_FASHION_MNIST}"
    labels = np.concatenate([y.numpy() for _, y in data.test])
    np.testing.assert_array_equal(np.bincount(labels), [1000] * 10)


def test_tfds_mock_data_pipeline_shapes(monkeypatch):
    monkeypatch.setattr(tfds_builders, "check_online", lambda name: None)
    with tfds.testing.mock_data(num_examples=20):
        data = load_image_data("cifar10", batch_size=8, data_dir=None)
        x, y = next(iter(data.train))
    assert x.shape == (8, 32, 32, 3) and data.num_classes == 10


def test_offline_fails_fast_with_instructions(tmp_path, monkeypatch):
    monkeypatch.setenv(datasets.OFFLINE_ENV, "1")
    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path))
    real_builder = tfds.builder
    monkeypatch.setattr(
        tfds,
        "builder",
        lambda name, **kw: real_builder(name, data_dir=str(tmp_path), **kw),
    )
    start = time.perf_counter()
    with pytest.raises(RuntimeError, match=r"--data-dir.*fashion-mnist"):
        load_image_data("mnist", batch_size=8)
    assert time.perf_counter() - start < 10


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"name": "imagenet"}, r"`name` must be one of .*imagenet"),
        ({"name": "digits", "batch_size": 0}, r"`batch_size`.*batch_size=0"),
        (
            {"name": "mnist", "data_dir": "/no/such/dir"},
            r"`data_dir` must be an existing folder.*/no/such/dir",
        ),
    ],
)
def test_invalid_arguments(kwargs, match):
    kwargs = {"batch_size": 8, **kwargs}
    with pytest.raises(ValueError, match=match):
        load_image_data(**kwargs)


def test_data_dir_without_the_files(tmp_path, monkeypatch):
    monkeypatch.setenv(datasets.CACHE_ENV, str(tmp_path / "cache"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"train-images-idx3-ubyte"):
        load_image_data(
            "fashion_mnist", batch_size=8, data_dir=str(tmp_path / "empty")
        )


_LIMITED_RUN = """
from keras_dynfilt.training import load_image_data
data = load_image_data("fashion_mnist", batch_size=32, data_dir={dir!r},
                       limit_train=100)
counts = [sum(int(x.shape[0]) for x, _ in data.train) for _ in range(2)]
print("counts", data.num_train, counts)
"""


@pytest.mark.slow
@needs_fashion_mnist
def test_limit_train_local_files_run_quietly(tmp_path):
    # A fresh process with TensorFlow's warnings on (the test session may
    # hide them) and an empty cache, so that tfds prepares the files here.
    import subprocess
    import sys

    env = dict(
        os.environ,
        TF_CPP_MIN_LOG_LEVEL="0",
        **{tfds_builders.CACHE_ENV: str(tmp_path)},
    )
    result = subprocess.run(
        [sys.executable, "-c", _LIMITED_RUN.format(dir=DEBIAN_FASHION_MNIST)],
        capture_output=True, text=True, env=env, timeout=600, check=True,
    )
    assert "counts 100 [100, 100]" in result.stdout
    assert "did not fully read the dataset being cached" not in result.stderr
    assert "Downloading and preparing" not in result.stdout
    assert "Preparing fashion_mnist from local files" in result.stdout
