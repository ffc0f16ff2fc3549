import keras
import numpy as np
import pytest

import keras_dynfilt
from keras_dynfilt.layers import NDDR
from keras_dynfilt.optimizers import get_lr_multiplier
from tests.harness import LayerConformance, mirrored_strategy


def nddr_reference(xs, kernels, gamma=None, beta=None, mean=None, var=None,
                   training=True, epsilon=1e-3, activation="relu"):
    """NDDR in float64 NumPy: concat -> 1x1 conv -> BN -> activation."""
    x = np.concatenate([np.asarray(a, np.float64) for a in xs], axis=-1)
    z = x @ np.concatenate([np.asarray(k, np.float64) for k in kernels], -1)
    if gamma is not None:
        axes = tuple(range(z.ndim - 1))
        if training:
            mean, var = z.mean(axis=axes), z.var(axis=axes)
        z = gamma * (z - mean) / np.sqrt(var + epsilon) + beta
    if activation == "relu":
        z = np.maximum(z, 0.0)
    splits = np.cumsum([k.shape[1] for k in kernels])[:-1]
    return np.split(z, splits, axis=-1)


# Keras's own training check feeds the layer's outputs through
# tf.data.Dataset.from_generator, which rejects a Python list of outputs;
# on TensorFlow the list-output training step is covered by the harness's
# test_fit_with_jit_compile (and the MirroredStrategy test) instead.
LIST_OUTPUT_TRAINING_CHECK = keras.backend.backend() != "tensorflow"


def _inputs(shapes, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.normal(size=s).astype("float32") for s in shapes]


class TestNDDRConformance(LayerConformance):
    layer_cls = NDDR
    run_keras_training_check = LIST_OUTPUT_TRAINING_CHECK
    # Synchronized BN: under MirroredStrategy the statistics are those of
    # the global batch, so the losses match one device (see also
    # test_unsynchronized_batch_norm_differs_under_mirrored_strategy).
    init_kwargs = {"batch_norm_synchronized": True, "lr_multiplier": 100.0}
    expected_output_shape = [(4, 5, 5, 3), (4, 5, 5, 5)]

    def make_inputs(self):
        return _inputs([(4, 5, 5, 3), (4, 5, 5, 5)])


class TestNDDRConformanceThreeTasksNoBatchNorm(LayerConformance):
    layer_cls = NDDR
    run_keras_training_check = LIST_OUTPUT_TRAINING_CHECK
    init_kwargs = {"init": "xavier", "use_batch_norm": False,
                   "activation": None}
    expected_output_shape = [(4, 6, 2), (4, 6, 2), (4, 6, 2)]

    def make_inputs(self):
        return _inputs([(4, 6, 2)] * 3, seed=1)


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("channels", [(3, 3), (2, 5, 4)])
def test_matches_numpy_reference(training, channels):
    rng = np.random.default_rng(3)
    xs = _inputs([(6, 4, 3, c) for c in channels], seed=4)
    layer = NDDR(alpha=0.7, beta=0.2)
    layer(xs)
    total = sum(channels)
    kernels = [rng.normal(size=(total, c)) for c in channels]
    gamma, beta = rng.uniform(0.5, 2, total), rng.normal(size=total)
    mean, var = rng.normal(size=total), rng.uniform(0.5, 2, total)
    layer.set_weights([k.astype("float32") for k in kernels]
                      + [gamma, beta, mean, var])
    found = layer(xs, training=training)
    expected = nddr_reference(xs, kernels, gamma, beta, mean, var, training)
    assert len(found) == len(channels)
    for f, e in zip(found, expected):
        np.testing.assert_allclose(keras.ops.convert_to_numpy(f), e,
                                   rtol=1e-4, atol=1e-4)


def test_diagonal_init_blocks():
    xs = _inputs([(2, 3, 3, 2), (2, 3, 3, 3)])
    layer = NDDR(alpha=0.8, beta=0.3)
    layer(xs)
    k0, k1 = (keras.ops.convert_to_numpy(k) for k in layer.kernels)
    np.testing.assert_array_equal(
        k0, np.vstack([0.8 * np.eye(2), 0.3 * np.eye(3, 2)]).astype("float32"))
    np.testing.assert_array_equal(
        k1, np.vstack([0.3 * np.eye(2, 3), 0.8 * np.eye(3)]).astype("float32"))


def test_alpha_one_beta_zero_starts_as_single_task_networks():
    xs = _inputs([(2, 4, 4, 3), (2, 4, 4, 3)], seed=5)
    layer = NDDR(alpha=1.0, beta=0.0, use_batch_norm=False, activation=None)
    for x, y in zip(xs, layer(xs)):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(y), x)


def test_xavier_init_is_glorot_uniform_on_the_fused_kernel():
    layer = NDDR(init="xavier")
    layer(_inputs([(2, 2, 2, 8), (2, 2, 2, 8)]))
    limit = np.sqrt(6.0 / (16 + 8))
    for k in layer.kernels:
        k = keras.ops.convert_to_numpy(k)
        assert np.abs(k).max() <= limit and np.abs(k).max() > 0.5 * limit
    assert isinstance(layer.init, keras.initializers.GlorotUniform)


def test_default_weight_decay_matches_reference():
    # Reference: 5e-4 * l2_loss(W) = 5e-4 * sum(W^2) / 2.
    layer = NDDR(alpha=0.5, beta=0.5)
    layer(_inputs([(2, 2, 2, 3), (2, 2, 2, 3)]))
    expected = sum(5e-4 * np.sum(keras.ops.convert_to_numpy(k) ** 2) / 2
                   for k in layer.kernels)
    np.testing.assert_allclose(float(sum(layer.losses)), expected, rtol=1e-6)
    assert NDDR(kernel_regularizer=None).kernel_regularizer is None


def test_variables_are_tagged_with_lr_multiplier():
    layer = NDDR(lr_multiplier=100.0)
    layer(_inputs([(2, 2, 2, 3), (2, 2, 2, 3)]))
    assert len(layer.trainable_variables) == 4  # 2 kernels, gamma, beta
    for v in layer.trainable_variables:
        assert get_lr_multiplier(v) == 100.0
    for v in layer.non_trainable_variables:
        assert get_lr_multiplier(v) is None


def test_mixed_precision_output_dtype():
    layer = NDDR(dtype="mixed_float16")
    ys = layer(_inputs([(2, 3, 3, 4), (2, 3, 3, 2)]), training=True)
    assert [keras.backend.standardize_dtype(y.dtype) for y in ys] == [
        "float16", "float16"]
    assert [tuple(y.shape) for y in ys] == [(2, 3, 3, 4), (2, 3, 3, 2)]


def test_top_level_export():
    assert keras_dynfilt.NDDR is NDDR
    assert keras_dynfilt.layers.NDDR is NDDR


@pytest.mark.tensorflow
def test_unsynchronized_batch_norm_differs_under_mirrored_strategy():
    # Without synchronization each replica normalises with the statistics
    # of its half of the batch: the loss is not that of one device. This is
    # why the conformance test uses batch_norm_synchronized=True.
    import tensorflow as tf

    xs = _inputs([(8, 3, 3, 2), (8, 3, 3, 2)], seed=6)
    xs[0][4:] += 3.0  # the two halves of the batch have different means
    targets = np.random.default_rng(7).normal(size=(8, 1))

    def loss(strategy, synchronized, weights=None):
        with strategy.scope():
            inputs = [keras.Input((3, 3, 2)) for _ in xs]
            ys = NDDR(batch_norm_synchronized=synchronized)(inputs)
            flat = keras.layers.Concatenate()(
                [keras.layers.Flatten()(y) for y in ys])
            model = keras.Model(inputs, keras.layers.Dense(1)(flat))
            if weights is not None:
                model.set_weights(weights)
            model.compile(optimizer="sgd", loss="mse")
        initial = model.get_weights()
        history = model.fit(xs, targets, batch_size=8, epochs=1, verbose=0,
                            shuffle=False)
        return initial, history.history["loss"][0]

    weights, single = loss(tf.distribute.get_strategy(), False)
    _, unsynced = loss(mirrored_strategy(), False, weights)
    _, synced = loss(mirrored_strategy(), True, weights)
    np.testing.assert_allclose(synced, single, rtol=1e-5)
    assert abs(unsynced - single) > 1e-3 * abs(single)


# -- errors -------------------------------------------------------------------


def test_single_tensor_raises():
    with pytest.raises(ValueError, match=r"list of K >= 2 task tensors.*"
                       r"single input of shape \(2, 3, 3, 4\)"):
        NDDR()(np.ones((2, 3, 3, 4), "float32"))


def test_one_input_raises():
    with pytest.raises(ValueError, match=r"K >= 2.*Received 1 input"):
        NDDR()([np.ones((2, 3, 3, 4), "float32")])


def test_mismatched_spatial_sizes_raise():
    with pytest.raises(ValueError, match=r"same spatial size.*Axis 2 differs"):
        NDDR()(_inputs([(2, 3, 3, 4), (2, 3, 4, 4)]))


def test_mismatched_ranks_raise():
    with pytest.raises(ValueError, match=r"same rank.*\(2, 3, 4\)"):
        NDDR()(_inputs([(2, 3, 3, 4), (2, 3, 4)]))


def test_rank_one_inputs_raise():
    with pytest.raises(ValueError, match=r"rank >= 2"):
        NDDR().compute_output_shape([(2,), (2,)])


def test_undefined_channels_raise():
    with pytest.raises(ValueError, match=r"channel \(last\) axis.*defined"):
        NDDR().build([(None, 3, 3, 4), (None, 3, 3, None)])


@pytest.mark.parametrize("name", ["alpha", "beta"])
@pytest.mark.parametrize("value", [-0.1, 1.5, float("nan"), "0.5", True,
                                   None])
def test_alpha_beta_out_of_range_raise(name, value):
    with pytest.raises(ValueError, match=rf"`{name}` must be a number in "
                       rf"\[0, 1\]. Received: {name}="):
        NDDR(**{name: value})


def test_alpha_and_beta_zero_raise():
    with pytest.raises(ValueError, match=r"cannot both be 0.*alpha=0"):
        NDDR(alpha=0, beta=0)


def test_bad_init_raises():
    with pytest.raises(ValueError, match=r"`init` must be \"diagonal\".*"
                       r"init='identity_matrix_please'"):
        NDDR(init="identity_matrix_please")


@pytest.mark.parametrize("kwargs, match", [
    ({"batch_norm_momentum": 1.0}, r"`batch_norm_momentum` must be .*\[0, 1\)"),
    ({"batch_norm_momentum": -0.5}, r"batch_norm_momentum=-0.5"),
    ({"batch_norm_epsilon": 0},
     r"`batch_norm_epsilon` must be a finite positive number.*=0"),
    ({"lr_multiplier": 0}, r"`lr_multiplier` must be a finite positive.*=0"),
    ({"lr_multiplier": float("inf")}, r"lr_multiplier=inf"),
])
def test_bad_arguments_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        NDDR(**kwargs)


@pytest.mark.parametrize("kwargs, match", [
    ({"use_batch_norm": "yes"}, r"`use_batch_norm` must be a boolean"),
    ({"batch_norm_synchronized": 1}, r"`batch_norm_synchronized` must be"),
])
def test_non_boolean_flags_are_type_errors(kwargs, match):
    with pytest.raises(TypeError, match=match):
        NDDR(**kwargs)
