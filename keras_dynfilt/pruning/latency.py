"""Inference latency of models side by side: what compaction buys."""

import statistics
import time

import keras

from keras_dynfilt._validation import check_positive_int


def _inference_fn(model):
    """The model's inference call, compiled as its backend compiles it."""
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        # `predict_on_batch` would add Keras's data-adapter overhead to
        # every call, which at batch 1 is comparable to a small model.
        return tf.function(lambda x: model(x, training=False))
    # JAX and PyTorch: the compiled predict step; its NumPy result waits
    # for the device (JAX dispatches asynchronously).
    return model.predict_on_batch


def inference_latency(models, x, repeats=30, calls=1):
    """Median seconds per inference call of each model on the same batch.

    The models are timed in turn within each repeat, so that a change of
    load on the machine hits every model alike; compare them as ratios
    measured in the same call, not against numbers from another run.
    Each model is traced and warmed up twice before timing.

    Args:
        models: A list of `keras.Model`s that accept `x`.
        x: The input batch (a NumPy array or a backend tensor).
        repeats: Positive integer, timed samples per model; the median is
            returned.
        calls: Positive integer, calls per sample (more for batches so
            small that the timer's resolution matters).

    Returns:
        A list of floats, median seconds per call, in the order of `models`.

    Examples:
        >>> full = keras.Sequential([keras.Input((8,)), keras.layers.Dense(64)])
        >>> small = keras.Sequential([keras.Input((8,)), keras.layers.Dense(8)])
        >>> x = np.ones((4, 8), "float32")
        >>> seconds = keras_dynfilt.pruning.inference_latency(
        ...     [full, small], x, repeats=3)
        >>> len(seconds), all(s > 0 for s in seconds)
        (2, True)
    """
    received = models
    if isinstance(models, keras.Model):
        models = [models]
    models = list(models) if isinstance(models, (list, tuple)) else []
    if not models or not all(isinstance(m, keras.Model) for m in models):
        raise TypeError(
            "`models` must be a non-empty list of keras.Model instances. "
            f"Received: models={received!r}"
        )
    repeats = check_positive_int(repeats, "repeats")
    calls = check_positive_int(calls, "calls")
    fns = [_inference_fn(m) for m in models]
    for fn in fns:
        keras.ops.convert_to_numpy(fn(x))
        keras.ops.convert_to_numpy(fn(x))
    times = [[] for _ in fns]
    for _ in range(repeats):
        for fn, samples in zip(fns, times):
            start = time.perf_counter()
            for _ in range(calls):
                # Converting waits for the result on every backend.
                keras.ops.convert_to_numpy(fn(x))
            samples.append((time.perf_counter() - start) / calls)
    return [statistics.median(samples) for samples in times]
