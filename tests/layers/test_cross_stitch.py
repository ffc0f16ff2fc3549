import keras
import numpy as np
import pytest

import keras_dynfilt
from keras_dynfilt.layers import CrossStitch
from keras_dynfilt.optimizers import get_lr_multiplier
from tests.harness import LayerConformance
from tests.layers.test_nddr import LIST_OUTPUT_TRAINING_CHECK, _inputs


def cross_stitch_reference(xs, kernel):
    """y_k = sum_j a[j, k] * x_j (kernel (K, K) or per channel (C, K, K))."""
    xs = [np.asarray(x, np.float64) for x in xs]
    kernel = np.asarray(kernel, np.float64)
    if kernel.ndim == 2:
        kernel = np.broadcast_to(kernel, (xs[0].shape[-1],) + kernel.shape)
    return [sum(x * kernel[:, j, k] for j, x in enumerate(xs))
            for k in range(len(xs))]


class TestCrossStitchConformancePerLayer(LayerConformance):
    layer_cls = CrossStitch
    run_keras_training_check = LIST_OUTPUT_TRAINING_CHECK
    init_kwargs = {"per_channel": False, "lr_multiplier": 10.0}
    expected_output_shape = [(4, 5, 5, 3), (4, 5, 5, 3)]

    def make_inputs(self):
        return _inputs([(4, 5, 5, 3)] * 2)


class TestCrossStitchConformancePerChannelThreeTasks(LayerConformance):
    layer_cls = CrossStitch
    run_keras_training_check = LIST_OUTPUT_TRAINING_CHECK
    init_kwargs = {"per_channel": True, "alpha": 0.8, "beta": 0.1}
    expected_output_shape = [(4, 6, 4)] * 3

    def make_inputs(self):
        return _inputs([(4, 6, 4)] * 3, seed=2)


@pytest.mark.parametrize("per_channel", [False, True])
def test_matches_numpy_reference(per_channel):
    xs = _inputs([(3, 4, 4, 5)] * 3, seed=3)
    layer = CrossStitch(per_channel=per_channel)
    layer(xs)
    shape = (5, 3, 3) if per_channel else (3, 3)
    kernel = np.random.default_rng(4).normal(size=shape)
    layer.set_weights([kernel.astype("float32")])
    for f, e in zip(layer(xs), cross_stitch_reference(xs, kernel)):
        np.testing.assert_allclose(keras.ops.convert_to_numpy(f), e,
                                   rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("per_channel", [False, True])
def test_initial_mixing(per_channel):
    xs = _inputs([(2, 3, 4)] * 2, seed=5)
    ys = CrossStitch(per_channel=per_channel, alpha=0.7, beta=0.2)(xs)
    ys = [keras.ops.convert_to_numpy(y) for y in ys]
    np.testing.assert_allclose(ys[0], 0.7 * xs[0] + 0.2 * xs[1], rtol=1e-6)
    np.testing.assert_allclose(ys[1], 0.2 * xs[0] + 0.7 * xs[1], rtol=1e-6)


def test_equals_nddr_with_scalar_identity_blocks():
    # The NDDR paper's claim: cross-stitch = NDDR whose blocks are a * I.
    xs = _inputs([(2, 3, 3, 4)] * 2, seed=6)
    stitch = keras_dynfilt.layers.NDDR(
        alpha=0.6, beta=0.3, use_batch_norm=False, activation=None,
        kernel_regularizer=None)
    for f, e in zip(stitch(xs), CrossStitch(alpha=0.6, beta=0.3)(xs)):
        np.testing.assert_allclose(
            keras.ops.convert_to_numpy(f), keras.ops.convert_to_numpy(e),
            rtol=1e-6, atol=1e-6,
        )


def test_variables_are_tagged_with_lr_multiplier():
    layer = CrossStitch(lr_multiplier=1000.0)
    layer(_inputs([(2, 3)] * 2))
    assert get_lr_multiplier(layer.kernel) == 1000.0


def test_mixed_precision_output_dtype():
    ys = CrossStitch(dtype="mixed_float16")(_inputs([(2, 3, 3, 4)] * 2))
    assert {keras.backend.standardize_dtype(y.dtype) for y in ys} == {
        "float16"}


def test_top_level_export():
    assert keras_dynfilt.CrossStitch is CrossStitch


def test_different_channels_raise():
    with pytest.raises(ValueError, match=r"same number of channels.*"
                       r"\(2, 3, 3, 5\)"):
        CrossStitch()(_inputs([(2, 3, 3, 4), (2, 3, 3, 5)]))


def test_one_input_raises():
    with pytest.raises(ValueError, match=r"CrossStitch expects a list of K"):
        CrossStitch()(_inputs([(2, 3, 3, 4)]))


def test_single_tensor_raises():
    with pytest.raises(ValueError, match=r"single input"):
        CrossStitch()(np.ones((2, 3, 3, 4), "float32"))


def test_mismatched_spatial_sizes_raise():
    with pytest.raises(ValueError, match=r"same spatial size"):
        CrossStitch()(_inputs([(2, 3, 3, 4), (2, 3, 2, 4)]))


@pytest.mark.parametrize("kwargs, match", [
    ({"alpha": 2.0}, r"`alpha` must be a number in \[0, 1\]. .*alpha=2.0"),
    ({"beta": -1}, r"`beta` must be a number in \[0, 1\]. .*beta=-1"),
    ({"alpha": 0, "beta": 0}, r"cannot both be 0"),
    ({"lr_multiplier": -1.0}, r"`lr_multiplier` must be a finite positive"),
])
def test_bad_arguments_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        CrossStitch(**kwargs)


def test_string_flag_is_a_type_error():
    with pytest.raises(TypeError, match=r"`per_channel` must be a boolean"):
        CrossStitch(per_channel="yes")
