"""Global-average-pooled activations of a model's layers, in one pass."""

import contextlib
import logging
import time

import keras
import numpy as np

from keras_dynfilt.cross_task._graph import pooled, probe_points, unique_name


class PooledActivations:
    """Pooled features of several layers for the same images.

    The feature of image `I` at layer `l` is `GAP(A_l(I))`, the mean of the
    layer's activation map over its spatial axes: a vector with one entry per
    channel (paper 001, section 3).

    Attributes:
        features: Dict `{layer_name: ndarray (N, C)}`, float32. For a layer
            followed by MFM, `C` is the number of MFM channels (half the
            layer's filters).
        labels: The `y` of `(x, y)` batches as one array, or None.
        points: Dict `{layer_name: name of the layer whose output was
            read}` (the activation point: after BatchNormalization,
            activations and MFM).
        seconds: Wall time of the pass, in seconds.
    """

    def __init__(self, features, labels=None, points=None, seconds=0.0):
        self.features = dict(features)
        self.labels = labels
        self.points = dict(points or {name: name for name in features})
        self.seconds = float(seconds)

    def __len__(self):
        return len(next(iter(self.features.values()))) if self.features else 0

    def __repr__(self):
        widths = ", ".join(f"{k}: {v.shape[1]}" for k, v in
                           self.features.items())
        return f"<PooledActivations of {len(self)} samples ({widths})>"

    def subset(self, layers):
        """The same samples with only the named layers."""
        return PooledActivations(
            {name: self.features[name] for name in layers}, self.labels,
            {name: self.points[name] for name in layers}, self.seconds,
        )


def _numpy_inputs(data):
    """`(x, y_or_None)` for NumPy inputs, None for iterables of batches."""
    if isinstance(data, dict):
        raise TypeError(
            "`data` must be an array, an `(x, y)` tuple of arrays, or an "
            "iterable of batches (a `tf.data.Dataset`). Received: a dict"
        )
    if isinstance(data, np.ndarray):
        return data, None
    if isinstance(data, tuple) and data and isinstance(data[0], np.ndarray):
        x, y = data[0], (data[1] if len(data) > 1 else None)
        if y is not None and len(y) != len(x):
            raise ValueError(
                "`data`'s images and labels must have the same length. "
                f"Received: {len(x)} images and {len(y)} labels"
            )
        return x, y
    return None


def _as_batches(data, batch_size):
    """Yields `(x, y_or_None)` batches from an iterable of batches."""
    if batch_size is not None:
        raise ValueError(
            "`batch_size` is for NumPy inputs; a dataset is batched already. "
            f"Received: batch_size={batch_size!r}"
        )
    iterator = data.as_numpy_iterator() if hasattr(
        data, "as_numpy_iterator") else iter(data)
    for batch in iterator:
        if isinstance(batch, (tuple, list)):
            yield batch[0], (None if len(batch) < 2 else np.asarray(batch[1]))
        else:
            yield batch, None


class _DropRetracingWarning(logging.Filter):
    """Drops TensorFlow's "triggered tf.function retracing" warning.

    Every `pooled_activations` call builds a new feature model, so each
    one traces its own predict function: the retracing TensorFlow counts is
    by design here, not a shape leak to fix.
    """

    def filter(self, record):
        return "triggered tf.function retracing" not in record.getMessage()


@contextlib.contextmanager
def _quiet_retracing():
    logger = logging.getLogger("tensorflow")
    drop = _DropRetracingWarning()
    logger.addFilter(drop)
    try:
        yield
    finally:
        logger.removeFilter(drop)


def collect(feature_model, data, batch_size=None):
    """Runs `feature_model` (dict outputs) over `data`; returns
    `(features, labels)`."""
    with _quiet_retracing():
        return _collect(feature_model, data, batch_size)


def _collect(feature_model, data, batch_size=None):
    """Runs `feature_model` (dict outputs) over `data`; returns
    `(features, labels)`."""
    arrays = _numpy_inputs(data)
    if arrays is not None:
        x, y = arrays
        if not len(x):
            raise ValueError("`data` is empty.")
        out = feature_model.predict(x, batch_size=batch_size or 64,
                                    verbose=0)
        return {name: np.asarray(keras.ops.convert_to_numpy(v), np.float32)
                for name, v in out.items()}, (
                    None if y is None else np.asarray(y))
    parts, labels, have_labels = {}, [], None
    for x, y in _as_batches(data, batch_size):
        out = feature_model.predict_on_batch(x)
        for name, value in out.items():
            parts.setdefault(name, []).append(
                np.asarray(keras.ops.convert_to_numpy(value), np.float32)
            )
        if have_labels is None:
            have_labels = y is not None
        if have_labels:
            if y is None:
                raise ValueError("Some batches of `data` have labels and "
                                 "some do not.")
            labels.append(y)
    if not parts:
        raise ValueError("`data` is empty.")
    features = {name: np.concatenate(v) for name, v in parts.items()}
    return features, (np.concatenate(labels) if have_labels else None)


def pooled_activations(model, data, layers=None, batch_size=None):
    """Global-average-pooled activations of a model's layers.

    One inference pass (`training=False`) over `data` reads every probed
    layer at once; `x` and `y` come from the same pass, so a shuffled
    dataset still pairs each feature with its label.

    Args:
        model: A functional or built Sequential `keras.Model`.
        data: NumPy images `x`, a tuple `(x, y)` of arrays, or an iterable
            of batches `x` or `(x, y[, sample_weight])` such as a batched
            `tf.data.Dataset`.
        layers: Optional list of layer names to probe. `None` probes every
            producer with spatial output (every convolution). A producer is
            read at its activation point, following BatchNormalization,
            activations and MFM to the first other layer; any other layer
            is read at its own output. Features are keyed by the given name.
        batch_size: Batch size for NumPy inputs (default 64).

    Returns:
        A `PooledActivations`.

    Raises:
        ValueError: for a layer that is not in the model, a layer without a
            channel axis, or images and labels of different lengths.

    Examples:

    >>> inputs = keras.Input((8, 8, 1))
    >>> h = keras.layers.Conv2D(4, 3, activation="relu", name="conv1")(inputs)
    >>> h = keras.layers.Conv2D(6, 3, activation="relu", name="conv2")(h)
    >>> h = keras.layers.GlobalAveragePooling2D()(h)
    >>> model = keras.Model(inputs, keras.layers.Dense(3)(h))
    >>> rng = np.random.default_rng(0)  # the same weights on every backend
    >>> model.set_weights(
    ...     [rng.normal(size=w.shape) for w in model.get_weights()])
    >>> x = rng.random((100, 8, 8, 1), "float32")
    >>> y = (x.mean(axis=(1, 2, 3)) > 0.5).astype("int32")
    >>> acts = keras_dynfilt.cross_task.pooled_activations(
    ...     model, (x, y), batch_size=32)
    >>> acts
    <PooledActivations of 100 samples (conv1: 4, conv2: 6)>
    >>> acts.features["conv2"].shape, acts.labels.shape
    ((100, 6), (100,))
    """
    probes = probe_points(model, layers)
    if not probes:
        raise ValueError(
            f"Model {model.name!r} has no convolution to probe; name the "
            "layers with `layers=`."
        )
    outputs = {
        name: pooled(p.tensor, unique_name(model, f"cross_task_pool_{i}"))
        for i, (name, p) in enumerate(probes.items())
    }
    inputs = model.inputs[0] if len(model.inputs) == 1 else model.inputs
    feature_model = keras.Model(inputs, outputs)
    start = time.perf_counter()
    features, labels = collect(feature_model, data, batch_size)
    seconds = time.perf_counter() - start
    return PooledActivations(
        features, labels, {n: p.point for n, p in probes.items()}, seconds
    )
