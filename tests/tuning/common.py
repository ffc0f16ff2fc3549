"""Shared set-up of the tuning tests: KerasTuner, tiny data, tiny models."""

import keras

# KerasTuner is part of the TensorFlow and the JAX test environments (the
# `tuner` extra): a missing or broken keras_tuner (keras-tuner 1.4 imports
# `six` without declaring it) is an error there, never a skip.
import keras_tuner as kt  # noqa: F401
import numpy as np


def image_data(n=32, shape=(8, 8, 1), classes=3, seed=0):
    """Random images in [0, 1] whose label is set by the mean brightness."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, n)
    x = rng.random((n, *shape)).astype("float32") * 0.5
    x += (labels / (2.0 * classes)).reshape(-1, 1, 1, 1).astype("float32")
    return x.astype("float32"), labels.astype("int32")


def tiny_conv(input_shape=(8, 8, 1), classes=3):
    """A small functional CNN with prunable convolutions."""
    inputs = keras.Input(input_shape)
    x = keras.layers.Conv2D(8, 3, padding="same", name="c1")(inputs)
    x = keras.layers.BatchNormalization(name="bn1")(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.Conv2D(8, 3, padding="same", name="c2")(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(classes)(x))
