"""tensorflow-datasets builders, online or fed from a local folder.

Online, datasets come from tensorflow-datasets (`tfds`) as users expect.
Offline, the same tfds builders are fed from local files: a builder
subclass serves each file the builder would download from a local folder
instead, so the features, splits and decoding are tfds's own and only the
file source differs. (`tfds.load` with a `manual_dir` would reject
recompressed files such as Debian's `dataset-fashion-mnist`, whose
checksums differ.) Prepared local copies are cached under
`~/.cache/keras_dynfilt/tensorflow_datasets`.
"""

import hashlib
import os
import pathlib
import socket
import urllib.parse

import keras
import numpy as np

OFFLINE_ENV = "KERAS_DYNFILT_OFFLINE"
CACHE_ENV = "KERAS_DYNFILT_CACHE"


def cache_dir():
    """Where prepared local copies go (`KERAS_DYNFILT_CACHE` overrides)."""
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


def local_builder(name, source_dir):
    """tfds's builder of `name`, reading its files from `source_dir`."""
    import tensorflow_datasets as tfds

    base = type(tfds.builder(name, try_gcs=False))
    source_dir = os.path.abspath(source_dir)

    class LocalFilesBuilder(base, skip_registration=True):
        def _split_generators(self, dl_manager):
            return super()._split_generators(
                _LocalFiles(dl_manager, source_dir)
            )

        def _log_download_bytes(self):
            # tfds prints "Downloading and preparing dataset Unknown size"
            # here, which reads as a download during an offline run.
            print(
                f"Preparing {self.name} from local files in {source_dir} "
                f"(once; kept in {self.data_dir})..."
            )

    LocalFilesBuilder.name = base.name
    key = hashlib.sha1(source_dir.encode()).hexdigest()[:10]
    return LocalFilesBuilder(
        data_dir=os.path.join(cache_dir(), f"local-{key}")
    )


def check_online(name):
    """Fails fast, saying what to do, when `name` would need the network."""
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


def require_tfds():
    """Raises an `ImportError` naming the extra when tfds is missing."""
    try:
        import tensorflow_datasets  # noqa: F401
    except ImportError as error:
        raise ImportError(
            "Loading mnist, fashion_mnist or cifar10 needs "
            "tensorflow-datasets: pip install 'keras-dynfilt[datasets]' "
            f"(or use name='digits'). ({error})"
        ) from error


def _prepared_builder(name, data_dir=None):
    import tensorflow_datasets as tfds

    if data_dir:
        builder = local_builder(name, data_dir)
    else:
        builder = tfds.builder(name)
        if not builder.is_prepared():
            check_online(name)
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(try_download_gcs=False)
    )
    return builder


def _num_examples(info, split, dataset):
    try:
        return info.splits[split].num_examples
    except KeyError:
        # No split metadata (e.g. under tfds.testing.mock_data): count.
        count = int(dataset.cardinality())
        if count < 0:
            count = int(dataset.reduce(0, lambda n, _: n + 1))
        return count


def load_tfds(name, data_dir):
    """The train and test splits of `name` as unbatched `tf.data` datasets.

    Returns:
        `(splits, counts, num_classes, class_names, source, image_shape)`.
    """
    import tensorflow_datasets as tfds

    builder = _prepared_builder(name, data_dir)
    source = f"local:{os.path.abspath(data_dir)}" if data_dir else "tfds"
    info = builder.info
    label = info.features["label"]
    # No tfds autocache: `tf_image_data` caches after its own `take`; a
    # cache under that `take` is left unfinished and TensorFlow warns ("The
    # calling iterator did not fully read the dataset being cached").
    read_config = tfds.ReadConfig(try_autocache=False)
    splits = {
        split: builder.as_dataset(
            split=split, as_supervised=True, read_config=read_config
        )
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


def tfds_arrays(name):
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
    builder = _prepared_builder(name)
    arrays = []
    for split in ("train", "test"):
        images, labels = tfds.as_numpy(
            builder.as_dataset(split=split, as_supervised=True, batch_size=-1)
        )
        arrays += [images, labels.astype(np.int64)]
    return tuple(arrays)
