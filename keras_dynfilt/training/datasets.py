"""Image-classification datasets, online and offline, on every backend.

On the TensorFlow backend, datasets are `tf.data` pipelines. Online, they
come from tensorflow-datasets (`tfds`) as users expect. Offline, the same
tfds builders are fed from local files: a builder subclass serves each file
the builder would download from a local folder instead, so the features,
splits and decoding are tfds's own and only the file source differs.
(`tfds.load` with a `manual_dir` would reject recompressed files such as
Debian's `dataset-fashion-mnist`, whose checksums differ.) Prepared local
copies are cached under `~/.cache/keras_dynfilt/tensorflow_datasets`.

On the other backends (JAX, PyTorch) nothing imports TensorFlow: local files
are read into NumPy (IDX files for MNIST and Fashion-MNIST, the binary
archive for CIFAR-10, scikit-learn for digits) and batched by an
`ArrayBatches` (a `keras.utils.PyDataset`); tfds serves online data only
where TensorFlow is installed.
"""

import dataclasses
import gzip
import hashlib
import os
import pathlib
import socket
import struct
import tarfile
import urllib.parse

import keras
import numpy as np

from keras_dynfilt._validation import check_int, check_positive_int

# Where Debian's `dataset-fashion-mnist` package puts the IDX files.
DEBIAN_FASHION_MNIST = "/usr/share/datasets/fashion-mnist"
TFDS_DATASETS = ("mnist", "fashion_mnist", "cifar10")
DATASETS = TFDS_DATASETS + ("digits",)
OFFLINE_ENV = "KERAS_DYNFILT_OFFLINE"
CACHE_ENV = "KERAS_DYNFILT_CACHE"


@dataclasses.dataclass
class ImageData:
    """Train and test pipelines of an image-classification dataset.

    Attributes:
        train: The training split, shuffled, batched by the global batch
            size: a prefetched `tf.data.Dataset` on the TensorFlow backend,
            an `ArrayBatches` (`keras.utils.PyDataset`) on the others.
        test: The test split, batched (same types).
        num_classes: Number of classes.
        input_shape: `(height, width, channels)` of one image.
        num_train: Number of training examples.
        num_test: Number of test examples.
        class_names: Class names, if the dataset has them.
        source: Where the data came from (`"tfds"`, `"local:<dir>"`,
            `"sklearn"`).
        name: The dataset name.
    """

    train: object
    test: object
    num_classes: int
    input_shape: tuple
    num_train: int
    num_test: int
    class_names: list
    source: str
    name: str


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


def _cache_dir():
    return os.environ.get(CACHE_ENV) or os.path.join(
        os.path.expanduser("~"),
        ".cache",
        "keras_dynfilt",
        "tensorflow_datasets",
    )


class _LocalFiles:
    """Stands in for tfds's DownloadManager: URLs map to files in a folder."""

    def __init__(self, dl_manager, source_dir):
        self._dl_manager = dl_manager
        self._source_dir = pathlib.Path(source_dir)

    def _local(self, url):
        basename = os.path.basename(urllib.parse.urlparse(str(url)).path)
        stem = basename[:-3] if basename.endswith(".gz") else basename
        for candidate in (basename, stem, stem + ".gz"):
            path = self._source_dir / candidate
            if path.exists():
                return path
        raise FileNotFoundError(
            f"`data_dir` has no file for {basename!r}. Expected one of "
            f"{sorted({basename, stem})} in {str(self._source_dir)!r}. "
            f"Found: {sorted(p.name for p in self._source_dir.iterdir())}"
        )

    def _map(self, fn, urls):
        if isinstance(urls, dict):
            return {k: fn(v) for k, v in urls.items()}
        if isinstance(urls, (list, tuple)):
            return type(urls)(fn(u) for u in urls)
        return fn(urls)

    def download(self, urls):
        return self._map(self._local, urls)

    def download_and_extract(self, urls):
        def one(url):
            path = self._local(url)
            if path.is_dir() or path.suffix not in (".gz", ".zip", ".tar"):
                return path
            return self._dl_manager.extract(path)

        return self._map(one, urls)

    def __getattr__(self, name):
        return getattr(self._dl_manager, name)


def _local_builder(name, source_dir):
    import tensorflow_datasets as tfds

    base = type(tfds.builder(name, try_gcs=False))
    source_dir = os.path.abspath(source_dir)

    class LocalFilesBuilder(base, skip_registration=True):
        def _split_generators(self, dl_manager):
            return super()._split_generators(
                _LocalFiles(dl_manager, source_dir)
            )

    LocalFilesBuilder.name = base.name
    key = hashlib.sha1(source_dir.encode()).hexdigest()[:10]
    return LocalFilesBuilder(
        data_dir=os.path.join(_cache_dir(), f"local-{key}")
    )


# IDX type codes (third byte of the magic number) -> item size in bytes.
_IDX_ITEM_SIZES = {0x08: 1, 0x09: 1, 0x0B: 2, 0x0C: 4, 0x0D: 4, 0x0E: 8}
# The four IDX files of MNIST and Fashion-MNIST, as tfds names them.


# The MNIST-style IDX files of each split.
IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def check_idx_file(path):
    """Checks an IDX file's header against its size; returns its shape.

    Reads only the header (and, for `.gz` files, the gzip trailer, which
    stores the uncompressed size), so a truncated or corrupt file under
    `--data-dir` is reported by name before any pipeline reads it.

    Raises:
        ValueError: naming the file, when the magic number is not IDX or the
            size does not match the header.
    """
    path = os.fspath(path)
    compressed = path.endswith(".gz")
    try:
        opener = gzip.open if compressed else open
        with opener(path, "rb") as f:
            magic = f.read(4)
            if len(magic) < 4 or magic[:2] != b"\0\0" or (
                magic[2] not in _IDX_ITEM_SIZES or magic[3] == 0
            ):
                raise ValueError(
                    f"{path!r} is not an IDX file (magic number "
                    f"{magic.hex() or 'missing'}; expected 0000 followed by "
                    "a type code and the number of dimensions)."
                )
            ndim = magic[3]
            header = f.read(4 * ndim)
            if len(header) < 4 * ndim:
                raise ValueError(
                    f"{path!r} is truncated: its IDX header announces "
                    f"{ndim} dimensions but the file ends before them."
                )
            shape = struct.unpack(f">{ndim}I", header)
        expected = 4 + 4 * ndim + _IDX_ITEM_SIZES[magic[2]] * int(
            np.prod(shape, dtype=np.int64)
        )
        if compressed:
            with open(path, "rb") as f:
                f.seek(-4, os.SEEK_END)
                # ISIZE: the uncompressed size modulo 2**32.
                size = struct.unpack("<I", f.read(4))[0]
            expected %= 2**32
        else:
            size = os.path.getsize(path)
    except (OSError, EOFError, gzip.BadGzipFile) as error:
        raise ValueError(
            f"{path!r} cannot be read as an IDX file: {error}"
        ) from None
    if size != expected:
        raise ValueError(
            f"{path!r} is truncated or corrupt: its IDX header announces "
            f"shape {shape} ({expected} bytes"
            + (" uncompressed" if compressed else "")
            + "), but "
            + (
                f"its gzip trailer records {size}"
                if compressed
                else f"the file holds {size}"
            )
            + " bytes."
        )
    return shape


def _check_idx_dir(data_dir):
    """Checks the MNIST-style IDX files found in `data_dir`."""
    counts = {}
    for stem in (stem for pair in IDX_FILES.values() for stem in pair):
        for candidate in (stem, stem + ".gz"):
            path = os.path.join(data_dir, candidate)
            if os.path.isfile(path):
                counts[stem] = (path, check_idx_file(path)[0])
                break
    for images_stem, labels_stem in IDX_FILES.values():
        images, labels = counts.get(images_stem), counts.get(labels_stem)
        if images and labels and images[1] != labels[1]:
            raise ValueError(
                f"{images[0]!r} holds {images[1]} images but {labels[0]!r} "
                f"holds {labels[1]} labels."
            )


def _check_online(name):
    if os.environ.get(OFFLINE_ENV):
        raise RuntimeError(
            f"Dataset {name!r} is not prepared locally and {OFFLINE_ENV} is "
            "set, so it will not be downloaded. Point `--data-dir` at local "
            "files (e.g. --data-dir /usr/share/datasets/fashion-mnist from "
            "Debian's dataset-fashion-mnist package) or use --dataset digits."
        )
    try:
        socket.create_connection(("storage.googleapis.com", 443), timeout=3)
    except OSError as error:
        raise RuntimeError(
            f"Dataset {name!r} is not prepared locally and the network is "
            f"unreachable ({error}); tensorflow-datasets would retry for "
            "minutes. Point `--data-dir` at local files (e.g. --data-dir "
            "/usr/share/datasets/fashion-mnist) or use --dataset digits."
        ) from None


def _num_examples(info, split, dataset):
    try:
        return info.splits[split].num_examples
    except KeyError:
        # No split metadata (e.g. under tfds.testing.mock_data): count.
        count = int(dataset.cardinality())
        if count < 0:
            count = int(dataset.reduce(0, lambda n, _: n + 1))
        return count


def _require_tfds():
    try:
        import tensorflow_datasets  # noqa: F401
    except ImportError as error:
        raise ImportError(
            "Loading mnist, fashion_mnist or cifar10 needs "
            "tensorflow-datasets: pip install 'keras-dynfilt[datasets]' "
            f"(or use name='digits'). ({error})"
        ) from error


def _load_tfds(name, data_dir):
    import tensorflow_datasets as tfds

    if data_dir:
        builder = _local_builder(name, data_dir)
        source = f"local:{os.path.abspath(data_dir)}"
    else:
        builder = tfds.builder(name)
        source = "tfds"
        if not builder.is_prepared():
            _check_online(name)
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(try_download_gcs=False)
    )
    info = builder.info
    label = info.features["label"]
    splits = {
        split: builder.as_dataset(split=split, as_supervised=True)
        for split in ("train", "test")
    }
    counts = {s: _num_examples(info, s, ds) for s, ds in splits.items()}
    return (
        splits,
        counts,
        label.num_classes,
        list(label.names),
        source,
        tuple(info.features["image"].shape),
    )


def _digits_arrays():
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


def _load_digits():
    import tensorflow as tf

    x_train, y_train, x_test, y_test = _digits_arrays()
    splits = {
        "train": tf.data.Dataset.from_tensor_slices((x_train, y_train)),
        "test": tf.data.Dataset.from_tensor_slices((x_test, y_test)),
    }
    counts = {"train": len(x_train), "test": len(x_test)}
    names = [str(i) for i in range(10)]
    return splits, counts, 10, names, "sklearn", (8, 8, 1)


# Class names as tensorflow-datasets gives them, for the NumPy readers.
CLASS_NAMES = {
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


def read_idx(path):
    """Reads one IDX file (`.gz` or not) of unsigned bytes as a NumPy array.

    The format of the MNIST files: two zero bytes, a type byte (0x08:
    unsigned byte), the number of dimensions, each dimension as a big-endian
    int32, then the data.
    """
    path = str(path)
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        raw = f.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise ValueError(
            f"{path!r} is not an IDX file of unsigned bytes (expected the "
            f"magic 00 00 08 NN). Received: {raw[:4].hex(' ')!r}"
        )
    ndim = raw[3]
    shape = tuple(
        int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)
    )
    data = np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(shape)):
        raise ValueError(
            f"{path!r} holds {data.size} values; its header says {shape}."
        )
    return data.reshape(shape)


def _find_file(source_dir, stem):
    for candidate in (stem, stem + ".gz"):
        path = pathlib.Path(source_dir) / candidate
        if path.exists():
            return path
    raise FileNotFoundError(
        f"`data_dir` has no file for {stem!r}. Expected one of "
        f"{[stem, stem + '.gz']} in {str(source_dir)!r}. "
        f"Found: {sorted(p.name for p in pathlib.Path(source_dir).iterdir())}"
    )


def _idx_arrays(source_dir):
    arrays = []
    for split in ("train", "test"):
        images, labels = (
            read_idx(_find_file(source_dir, stem)) for stem in IDX_FILES[split]
        )
        arrays += [images[..., None], labels.astype(np.int64)]
    return tuple(arrays)


def _cifar10_arrays(source_dir):
    """CIFAR-10 from `cifar-10-binary.tar.gz` (records: label + 3x32x32)."""
    path = _find_file(source_dir, "cifar-10-binary.tar")
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


def _tfds_arrays(name):
    """Online data through tfds as NumPy, where TensorFlow is installed."""
    try:
        import tensorflow_datasets as tfds
    except ImportError:
        raise RuntimeError(
            f"Dataset {name!r} has no local files and tensorflow-datasets "
            "(which downloads it) is not installed on this "
            f"{keras.backend.backend()} backend. Point `--data-dir` at local "
            "files (e.g. --data-dir /usr/share/datasets/fashion-mnist) or "
            "use --dataset digits."
        ) from None
    builder = tfds.builder(name)
    if not builder.is_prepared():
        _check_online(name)
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(try_download_gcs=False)
    )
    arrays = []
    for split in ("train", "test"):
        images, labels = tfds.as_numpy(
            builder.as_dataset(split=split, as_supervised=True, batch_size=-1)
        )
        arrays += [images, labels.astype(np.int64)]
    return tuple(arrays)


def _load_arrays(name, data_dir):
    """(x_train, y_train, x_test, y_test, source) as uint8 / int arrays."""
    if name == "digits":
        return (*_digits_arrays(), "sklearn")
    data_dir = data_dir or default_data_dir(name)
    if data_dir is None:
        return (*_tfds_arrays(name), "tfds")
    reader = _cifar10_arrays if name == "cifar10" else _idx_arrays
    return (*reader(data_dir), f"local:{os.path.abspath(data_dir)}")


class ArrayBatches(keras.utils.PyDataset):
    """Batches of NumPy image arrays, for the backends without `tf.data`.

    Images come as float32 in [0, 1], labels as int32. With a `seed`, every
    pass over the data draws a new permutation (`seed` and the pass number
    seed it, so runs repeat); `augment` and `map_fn` are applied to each
    batch, in that order. `take(n)` keeps the first `n` batches, `repeat()`
    makes the stream endless (for `steps_per_epoch` slices of it), like
    their `tf.data` namesakes.

    Args:
        images: uint8 array `(N, H, W, C)`.
        labels: Integer array `(N,)`.
        batch_size: Examples per batch (the last one may be smaller).
        seed: Shuffle seed; `None` keeps the order.
        augment: Optional `fn(images, labels) -> (images, labels)` on NumPy
            batches.
        map_fn: Optional `fn(images, labels) -> element` on NumPy batches.
        multiple: Every batch size is cut down to a multiple of this (the
            number of data-parallel devices, which each take an equal
            share); only a short last batch can lose examples.
    """

    def __init__(
        self,
        images,
        labels,
        batch_size,
        seed=None,
        augment=None,
        map_fn=None,
        max_batches=None,
        endless=False,
        multiple=1,
    ):
        super().__init__()
        self.images = images
        self.labels = labels
        self.batch_size = batch_size
        self.seed = seed
        self.augment = augment
        self.map_fn = map_fn
        self.max_batches = max_batches
        self.endless = endless
        self.multiple = multiple
        self._pass = -1
        self._order = None

    def _copy(self, **changes):
        kwargs = dict(
            images=self.images, labels=self.labels,
            batch_size=self.batch_size, seed=self.seed, augment=self.augment,
            map_fn=self.map_fn, max_batches=self.max_batches,
            endless=self.endless, multiple=self.multiple,
        )
        return ArrayBatches(**{**kwargs, **changes})

    def take(self, count):
        """The first `count` batches of each pass."""
        return self._copy(max_batches=min(count, self._batches_per_pass()))

    def repeat(self):
        """An endless stream of passes."""
        return self._copy(endless=True)

    def _batches_per_pass(self):
        full = -(-len(self.images) // self.batch_size)
        return full if self.max_batches is None else self.max_batches

    @property
    def num_batches(self):
        return None if self.endless else self._batches_per_pass()

    def __getitem__(self, index):
        per_pass = self._batches_per_pass()
        if not self.endless and index >= per_pass:
            raise IndexError(f"batch {index} of {per_pass}")
        step = index % per_pass
        if step == 0 or self._order is None:
            # A new pass over the data: a new permutation.
            self._pass += 1
            self._order = (
                None if self.seed is None
                else np.random.default_rng([self.seed, self._pass])
                .permutation(len(self.images))
            )
        start = step * self.batch_size
        size = min(self.batch_size, len(self.images) - start)
        if size > self.multiple:
            size -= size % self.multiple
        rows = slice(start, start + size)
        if self._order is None:
            images, labels = self.images[rows], self.labels[rows]
        else:
            chosen = self._order[rows]
            images, labels = self.images[chosen], self.labels[chosen]
        images = images.astype(np.float32) / np.float32(255.0)
        labels = labels.astype(np.int32)
        if self.augment is not None:
            images, labels = self.augment(images, labels)
        if self.map_fn is not None:
            return self.map_fn(images, labels)
        return images, labels

    def as_numpy_iterator(self):
        """Iterates over one pass, as `tf.data.Dataset` does."""
        return iter(self)


def _numpy_image_data(
    name, batch_size, data_dir, seed, map_fn, augment, limit_train, multiple
):
    x_train, y_train, x_test, y_test, source = _load_arrays(name, data_dir)
    if limit_train:
        x_train, y_train = x_train[:limit_train], y_train[:limit_train]
    names = (
        [str(i) for i in range(10)] if name == "digits" else CLASS_NAMES[name]
    )
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
    if name in ("mnist", "fashion_mnist"):
        folder = data_dir or default_data_dir(name)
        if folder:
            _check_idx_dir(folder)
    if keras.backend.backend() != "tensorflow":
        return _numpy_image_data(
            name, batch_size, data_dir, seed, map_fn, augment, limit_train,
            batch_multiple,
        )
    if name != "digits":
        _require_tfds()

    import tensorflow as tf

    if name == "digits":
        splits, counts, num_classes, names, source, shape = _load_digits()
    else:
        data_dir = data_dir or default_data_dir(name)
        splits, counts, num_classes, names, source, shape = _load_tfds(
            name, data_dir
        )

    def to_float(image, label):
        return tf.cast(image, tf.float32) / 255.0, tf.cast(label, tf.int32)

    train = splits["train"]
    if limit_train:
        train = train.take(limit_train)
        counts["train"] = min(counts["train"], limit_train)
    train = train.map(to_float, num_parallel_calls=tf.data.AUTOTUNE).cache()
    train = train.shuffle(
        shuffle_buffer or counts["train"],
        seed=seed,
        reshuffle_each_iteration=True,
    )
    if augment is not None:
        train = train.map(augment, num_parallel_calls=tf.data.AUTOTUNE)
    test = splits["test"].map(to_float, num_parallel_calls=tf.data.AUTOTUNE)
    test = test.cache()
    if map_fn is not None:
        train = train.map(map_fn, num_parallel_calls=tf.data.AUTOTUNE)
        test = test.map(map_fn, num_parallel_calls=tf.data.AUTOTUNE)
    train = train.batch(batch_size).prefetch(tf.data.AUTOTUNE)
    test = test.batch(batch_size).prefetch(tf.data.AUTOTUNE)
    return ImageData(
        train=train,
        test=test,
        num_classes=int(num_classes),
        input_shape=tuple(int(d) for d in shape),
        num_train=int(counts["train"]),
        num_test=int(counts["test"]),
        class_names=names,
        source=source,
        name=name,
    )


def numpy_split(data, split="test"):
    """Materialises one split of an `ImageData` as NumPy arrays."""
    dataset = getattr(data, split)
    xs, ys = [], []
    for x, y in dataset.as_numpy_iterator():
        xs.append(np.asarray(x))
        ys.append(np.asarray(y))
    return np.concatenate(xs), np.concatenate(ys)
