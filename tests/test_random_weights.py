"""The random weights of the exactness checks (`tests/random_weights.py`)."""

import keras
import numpy as np
import pytest

from tests.random_weights import randomize

L = keras.layers


def _std(variable):
    return float(np.std(keras.ops.convert_to_numpy(variable)))


def test_kernels_are_drawn_with_their_fan_in():
    inputs = keras.Input((8, 8, 64))
    x = L.DepthwiseConv2D(3, name="dw")(inputs)
    x = L.SeparableConv2D(8, 3, name="sep")(x)
    x = L.Conv2D(16, 3, name="conv")(x)
    model = randomize(keras.Model(inputs, x))
    # A depthwise filter reads one channel through its 3x3 window: fan-in
    # 9, not 9 * 64 (which would shrink the signal 8-fold at every
    # depthwise layer of a MobileNet).
    depthwise = model.get_layer("dw").kernel
    separable = model.get_layer("sep")
    for kernel in (depthwise, separable.depthwise_kernel):
        assert _std(kernel) == pytest.approx(1 / 3, rel=0.15), kernel.path
    # Dense-like kernels: the whole kernel but the output axis.
    assert _std(separable.pointwise_kernel) == pytest.approx(
        1 / np.sqrt(64), rel=0.15
    )
    assert _std(model.get_layer("conv").kernel) == pytest.approx(
        1 / np.sqrt(9 * 8), rel=0.15
    )


def test_batch_norm_statistics_dtypes_and_data_statistics():
    inputs = keras.Input((4,), dtype="float64")
    x = L.Normalization(
        mean=0.5, variance=2.0, dtype="float64", name="norm"
    )(inputs)
    x = L.Dense(3, dtype="float64")(x)
    x = L.BatchNormalization(dtype="float64", name="bn")(x)
    model = randomize(keras.Model(inputs, x), seed=1)
    bn = model.get_layer("bn")
    variance = keras.ops.convert_to_numpy(bn.moving_variance)
    assert np.all((0.5 <= variance) & (variance <= 2.0))
    assert not np.allclose(keras.ops.convert_to_numpy(bn.moving_mean), 0)
    assert bn.gamma.dtype == "float64"
    # Normalization's statistics are data, not weights to draw.
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(model.get_layer("norm").variance), 2.0
    )
