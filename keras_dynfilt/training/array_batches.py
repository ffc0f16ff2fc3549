"""`ArrayBatches`: NumPy image batches as a `keras.utils.PyDataset`."""

import keras
import numpy as np


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
