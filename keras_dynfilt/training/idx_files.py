"""MNIST-style IDX files (MNIST, Fashion-MNIST): header checks, a reader.

Used on every backend: the checks run before tfds or tf.data sees a
`--data-dir`, the reader is the NumPy path of the backends without tf.data.
"""

import gzip
import os
import pathlib
import struct

import numpy as np

# IDX type codes (third byte of the magic number) -> item size in bytes.
_IDX_ITEM_SIZES = {0x08: 1, 0x09: 1, 0x0B: 2, 0x0C: 4, 0x0D: 4, 0x0E: 8}

# The MNIST-style IDX files of each split, as tfds names them.
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


def check_idx_dir(data_dir):
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


def find_file(source_dir, stem):
    """`source_dir/stem` or `source_dir/stem.gz`, whichever exists."""
    for candidate in (stem, stem + ".gz"):
        path = pathlib.Path(source_dir) / candidate
        if path.exists():
            return path
    raise FileNotFoundError(
        f"`data_dir` has no file for {stem!r}. Expected one of "
        f"{[stem, stem + '.gz']} in {str(source_dir)!r}. "
        f"Found: {sorted(p.name for p in pathlib.Path(source_dir).iterdir())}"
    )


def idx_arrays(source_dir):
    """(x_train, y_train, x_test, y_test) from the four IDX files."""
    arrays = []
    for split in ("train", "test"):
        images, labels = (
            read_idx(find_file(source_dir, stem)) for stem in IDX_FILES[split]
        )
        arrays += [images[..., None], labels.astype(np.int64)]
    return tuple(arrays)
