"""Bad data arguments and files: refused before tf.data or tfds sees them."""

import gzip
import struct
import sys

import numpy as np
import pytest

from tests.bad_input.table import INF, NAN, check_table, numeric

# keras_dynfilt.training imports TensorFlow (tf.data, tf.distribute).
pytestmark = pytest.mark.tensorflow


@pytest.fixture(scope="module")
def datasets():
    pytest.importorskip("tensorflow")
    from keras_dynfilt.training import datasets

    return datasets


def _idx(shape):
    # Random bytes: zeros would compress to a few bytes.
    data = np.random.default_rng(0).integers(0, 256, shape, "uint8")
    header = struct.pack(">BBBB", 0, 0, 0x08, len(shape))
    return header + struct.pack(f">{len(shape)}I", *shape) + data.tobytes()


def _write_mnist(folder, n_train=6, n_test=4, compress=True):
    files = {
        "train-images-idx3-ubyte": _idx((n_train, 28, 28)),
        "train-labels-idx1-ubyte": _idx((n_train,)),
        "t10k-images-idx3-ubyte": _idx((n_test, 28, 28)),
        "t10k-labels-idx1-ubyte": _idx((n_test,)),
    }
    for stem, data in files.items():
        if compress:
            (folder / f"{stem}.gz").write_bytes(gzip.compress(data))
        else:
            (folder / stem).write_bytes(data)
    return files


def test_bad_arguments_are_refused(datasets):
    def load(**kwargs):
        return datasets.load_image_data(
            **{"name": "digits", "batch_size": 8, **kwargs}
        )

    optional_count = numeric("positive_int", allow_none=True,
                             drop=("huge",))
    check_table(load, {
        "name": {"unknown": "imagenet", "none": None, "int": 5,
                 "bool": True},
        "batch_size": numeric("positive_int"),
        "seed": {"string": "0", "float": 1.5, "bool": True, "none": None,
                 "negative": -1, "inf": INF, "nan": NAN, "huge": 2**64},
        # 0 once meant "no limit" silently.
        "limit_train": optional_count,
        "shuffle_buffer": optional_count,
        "map_fn": {"int": 5, "string": "flip"},
        "augment": {"int": 5, "string": "flip"},
    })
    check_table(
        datasets.load_image_data,
        {"data_dir": {"missing": "/no/such/dir", "int": 5}},
        name="fashion_mnist", batch_size=8,
    )


def test_good_idx_files_pass_the_check(datasets, tmp_path):
    for compress in (True, False):
        folder = tmp_path / str(compress)
        folder.mkdir()
        _write_mnist(folder, compress=compress)
        datasets.check_idx_dir(str(folder))
    assert datasets.check_idx_file(
        folder / "train-images-idx3-ubyte"
    ) == (6, 28, 28)


@pytest.mark.parametrize("compress", [True, False])
def test_corrupt_idx_files_are_named(datasets, tmp_path, compress):
    cases = {
        "truncated": lambda data: data[: len(data) // 2],
        "garbage": lambda data: b"not an idx file at all",
        "empty": lambda data: b"",
        "header_only": lambda data: data[:6],
        "extra_bytes": lambda data: data + b"\0" * 7,
    }
    problems = []
    for label, damage in cases.items():
        folder = tmp_path / f"{label}_{compress}"
        folder.mkdir()
        files = _write_mnist(folder, compress=compress)
        stem = "train-images-idx3-ubyte"
        data = damage(files[stem])
        path = folder / (stem + (".gz" if compress else ""))
        path.write_bytes(gzip.compress(data) if compress else data)
        if compress and label == "truncated":
            # A download cut short: the gzip stream itself is truncated.
            whole = gzip.compress(files[stem])
            path.write_bytes(whole[: len(whole) // 2])
        try:
            datasets.load_image_data("fashion_mnist", 8, data_dir=str(folder))
            problems.append(f"{label}: no error")
        except ValueError as error:
            if str(path) not in str(error):
                problems.append(f"{label}: does not name the file: {error}")
        except Exception as error:  # noqa: BLE001 - reported
            problems.append(f"{label}: {type(error).__name__}: {error}")
    assert not problems, "\n".join(problems)


def test_images_and_labels_that_disagree_are_named(datasets, tmp_path):
    _write_mnist(tmp_path)
    (tmp_path / "train-labels-idx1-ubyte.gz").write_bytes(
        gzip.compress(_idx((5,)))
    )
    with pytest.raises(ValueError, match=r"6 images.*5 labels"):
        datasets.load_image_data("mnist", 8, data_dir=str(tmp_path))


def test_missing_tensorflow_datasets_names_the_extra(datasets, monkeypatch,
                                                      tmp_path):
    _write_mnist(tmp_path)
    # `None` in sys.modules makes `import tensorflow_datasets` fail.
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)
    with pytest.raises(ImportError, match=r"keras-dynfilt\[datasets\]"):
        datasets.load_image_data("mnist", 8, data_dir=str(tmp_path))
