import keras
import numpy as np
import pytest

import keras_dynfilt
from keras_dynfilt.layers import MFM
from tests.harness import LayerConformance


def mfm_reference(x, axis=-1):
    """LightCNN's mfm in NumPy: max of the first and second channel half."""
    first, second = np.split(np.asarray(x, np.float64), 2, axis=axis)
    return np.maximum(first, second)


class TestMFMConformanceConv(LayerConformance):
    layer_cls = MFM
    init_kwargs = {"axis": -1}
    expected_output_shape = (4, 5, 5, 3)

    def make_inputs(self):
        return np.random.default_rng(0).normal(size=(4, 5, 5, 6)).astype(
            "float32"
        )


class TestMFMConformanceDense(LayerConformance):
    layer_cls = MFM
    init_kwargs = {"axis": 1}
    expected_output_shape = (4, 4)

    def make_inputs(self):
        return np.random.default_rng(1).normal(size=(4, 8)).astype("float32")


@pytest.mark.parametrize(
    "shape, axis",
    [((3, 8), -1), ((3, 4, 6), -1), ((2, 5, 5, 10), -1), ((2, 6, 5, 5), 1),
     ((2, 3, 4, 4, 8), -1), ((2, 4, 6, 3, 2), 2)],
)
def test_matches_numpy_reference(shape, axis):
    x = np.random.default_rng(2).normal(size=shape).astype("float32")
    y = keras.ops.convert_to_numpy(MFM(axis=axis)(x))
    np.testing.assert_allclose(y, mfm_reference(x, axis), rtol=0, atol=0)


def test_half_split_order_matches_lightcnn():
    # Channels [a0, a1, b0, b1] -> [max(a0, b0), max(a1, b1)], not pairs of
    # neighbours: the order LightCNN's ported weights rely on.
    x = np.array([[1.0, 5.0, 3.0, 2.0]], "float32")
    np.testing.assert_array_equal(MFM()(x), [[3.0, 5.0]])


def test_gradient_goes_to_the_larger_half():
    import keras.ops as ops

    x = np.array([[1.0, 5.0, 3.0, 2.0]], "float32")
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        xt = tf.constant(x)
        with tf.GradientTape() as tape:
            tape.watch(xt)
            y = ops.sum(MFM()(xt))
        grad = tape.gradient(y, xt).numpy()
    elif keras.backend.backend() == "torch":
        import torch

        xt = torch.tensor(x, requires_grad=True)
        (grad,) = torch.autograd.grad(ops.sum(MFM()(xt)), xt)
        grad = grad.numpy()
    else:
        import jax

        grad = np.asarray(jax.grad(lambda v: ops.sum(MFM()(v)))(x))
    np.testing.assert_array_equal(grad, [[0.0, 1.0, 1.0, 0.0]])


def test_output_shape_and_dtype_mixed_precision():
    layer = MFM(dtype="mixed_float16")
    y = layer(np.ones((2, 3, 3, 4), "float32"))
    assert tuple(y.shape) == (2, 3, 3, 2)
    assert keras.backend.standardize_dtype(y.dtype) == "float16"


def test_top_level_export():
    assert keras_dynfilt.MFM is MFM
    assert keras_dynfilt.layers.MFM is MFM


def test_odd_channels_raise():
    with pytest.raises(ValueError, match=r"even number of channels.*5"):
        MFM()(np.ones((2, 5), "float32"))


@pytest.mark.parametrize("axis", [1.5, "channels", None, True])
def test_non_integer_axis_raises(axis):
    with pytest.raises(ValueError, match=r"`axis` must be an integer.*axis="):
        MFM(axis=axis)


def test_axis_out_of_range_raises():
    with pytest.raises(ValueError, match=r"`axis` is out of range.*axis=3"):
        MFM(axis=3)(np.ones((2, 4, 4), "float32"))


def test_batch_axis_raises():
    with pytest.raises(ValueError, match=r"cannot be the batch axis"):
        MFM(axis=0)(np.ones((2, 4), "float32"))


def test_rank_one_raises():
    with pytest.raises(ValueError, match=r"rank >= 2"):
        MFM().compute_output_shape((4,))


def test_unknown_channels_raise():
    with pytest.raises(ValueError, match=r"channel axis .* must be defined"):
        MFM().build((None, None))
