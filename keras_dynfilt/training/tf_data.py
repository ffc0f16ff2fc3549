"""The `tf.data` path of `load_image_data` (TensorFlow backend).

Datasets are `tf.data` pipelines: tensorflow-datasets' builders (online,
or fed from a local folder; `tfds_builders`) and scikit-learn's digits.
"""

from keras_dynfilt.training.image_data import ImageData
from keras_dynfilt.training.numpy_data import CLASS_NAMES, digits_arrays
from keras_dynfilt.training.tfds_builders import load_tfds, require_tfds


def _load_digits():
    import tensorflow as tf

    x_train, y_train, x_test, y_test = digits_arrays()
    splits = {
        "train": tf.data.Dataset.from_tensor_slices((x_train, y_train)),
        "test": tf.data.Dataset.from_tensor_slices((x_test, y_test)),
    }
    counts = {"train": len(x_train), "test": len(x_test)}
    names = list(CLASS_NAMES["digits"])
    return splits, counts, 10, names, "sklearn", (8, 8, 1)


def tf_image_data(
    name, batch_size, data_dir, seed, map_fn, augment, shuffle_buffer,
    limit_train,
):
    """`load_image_data` on TensorFlow: prefetched `tf.data` pipelines."""
    if name != "digits":
        require_tfds()

    import tensorflow as tf

    if name == "digits":
        splits, counts, num_classes, names, source, shape = _load_digits()
    else:
        splits, counts, num_classes, names, source, shape = load_tfds(
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
