import keras
import numpy as np
import pytest

import keras_dynfilt
from keras_dynfilt.layers import FilterGenerator
from tests.harness import LayerConformance

PATHS = ("mix", "patches")


# -- the float64 per-sample reference ----------------------------------------
def reference_filters(z, repository, coefficient_kernel, coefficient_bias):
    """k[b, ..., i] = sum_j w[b, i, j] repository[..., j], in float64."""
    n_filters = coefficient_kernel.shape[1] // repository.shape[-1]
    w = np.asarray(z, np.float64) @ coefficient_kernel
    if coefficient_bias is not None:
        w = w + coefficient_bias
    w = w.reshape(len(z), n_filters, repository.shape[-1])
    return np.einsum("hwcm,bnm->bhwcn", repository, w)


def reference_conv(x, kernel, strides, padding, dilation):
    """One sample, one kernel (kh, kw, c, n): TensorFlow's conv semantics."""
    (kh, kw), (sh, sw), (dh, dw) = kernel.shape[:2], strides, dilation
    height, width = x.shape[:2]
    eff_h, eff_w = (kh - 1) * dh + 1, (kw - 1) * dw + 1
    if padding == "same":
        out_h, out_w = -(-height // sh), -(-width // sw)
        pad_h = max((out_h - 1) * sh + eff_h - height, 0)
        pad_w = max((out_w - 1) * sw + eff_w - width, 0)
        x = np.pad(
            x,
            [(pad_h // 2, pad_h - pad_h // 2),
             (pad_w // 2, pad_w - pad_w // 2), (0, 0)],
        )
    else:
        out_h = (height - eff_h) // sh + 1
        out_w = (width - eff_w) // sw + 1
    y = np.zeros((out_h, out_w, kernel.shape[-1]))
    for r in range(out_h):
        for c in range(out_w):
            patch = x[r * sh: r * sh + eff_h: dh, c * sw: c * sw + eff_w: dw]
            y[r, c] = np.einsum("hwc,hwcn->n", patch, kernel)
    return y


def reference_call(x, z, weights, config):
    """The layer's output, built sample by sample from its kernels."""
    kernels = reference_filters(
        z,
        weights["repository"],
        weights["coefficient_kernel"],
        weights.get("coefficient_bias"),
    )
    y = np.stack(
        [
            reference_conv(
                np.asarray(x[b], np.float64),
                kernels[b],
                config["strides"],
                config["padding"],
                config["dilation_rate"],
            )
            for b in range(len(x))
        ]
    )
    if "bias" in weights:
        y = y + weights["bias"]
    return y


def layer_weights(layer):
    return {
        v.path.split("/")[-1]: np.asarray(
            keras.ops.convert_to_numpy(v), np.float64
        )
        for v in layer.weights
    }


def numerical_gradients(x, z, weights, config, probe, eps=1e-6):
    """Central differences of sum(probe * reference_call) in float64."""
    arrays = {"x": np.asarray(x, np.float64), "z": np.asarray(z, np.float64),
              **{k: v.copy() for k, v in weights.items()}}

    def loss():
        w = {k: arrays[k] for k in weights}
        return np.sum(probe * reference_call(arrays["x"], arrays["z"], w,
                                             config))

    grads = {}
    for name, array in arrays.items():
        grad = np.zeros_like(array)
        flat, gflat = array.reshape(-1), grad.reshape(-1)
        for i in range(flat.size):
            keep = flat[i]
            flat[i] = keep + eps
            up = loss()
            flat[i] = keep - eps
            down = loss()
            flat[i] = keep
            gflat[i] = (up - down) / (2 * eps)
        grads[name] = grad
    return grads


def backend_gradients(layer, x, z, probe):
    """Autodiff gradients of sum(probe * layer([x, z])) on the backend."""
    names = [v.path.split("/")[-1] for v in layer.trainable_variables]
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        xt, zt = tf.constant(x), tf.constant(z)
        with tf.GradientTape() as tape:
            tape.watch([xt, zt])
            loss = tf.reduce_sum(probe * layer([xt, zt]))
        grads = tape.gradient(loss, [xt, zt, *layer.trainable_variables])
        grads = [g.numpy() for g in grads]
    elif keras.backend.backend() == "torch":
        import torch

        xt = torch.tensor(x, requires_grad=True)
        zt = torch.tensor(z, requires_grad=True)
        loss = torch.sum(torch.tensor(probe) * layer([xt, zt]))
        grads = torch.autograd.grad(
            loss, [xt, zt, *(v.value for v in layer.trainable_variables)]
        )
        grads = [g.numpy() for g in grads]
    else:
        import jax

        def loss(trainable, xv, zv):
            y, _ = layer.stateless_call(
                trainable, [v.value for v in layer.non_trainable_variables],
                [xv, zv],
            )
            return jax.numpy.sum(probe * y)

        trainable = [v.value for v in layer.trainable_variables]
        g_vars, g_x, g_z = jax.grad(loss, argnums=(0, 1, 2))(trainable, x, z)
        grads = [np.asarray(g_x), np.asarray(g_z)] + [
            np.asarray(g) for g in g_vars
        ]
    return dict(zip(["x", "z", *names], grads))


CASES = [
    # kernel, strides, padding, dilation, filters, repository, use_bias
    ((3, 3), (1, 1), "valid", (1, 1), 3, 2, True),
    ((3, 2), (2, 1), "same", (1, 1), 2, 4, True),
    ((2, 2), (1, 2), "same", (2, 1), 3, 3, False),
    ((3, 3), (2, 2), "valid", (1, 2), 2, 5, True),
]


def _make_case(case, dtype, seed=0):
    kernel, strides, padding, dilation, filters, m, use_bias = case
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(2, 7, 6, 2)).astype(dtype)
    z = rng.normal(size=(2, 3)).astype(dtype)
    config = {
        "filters": filters,
        "kernel_size": kernel,
        "repository_size": m,
        "strides": strides,
        "padding": padding,
        "dilation_rate": dilation,
        "use_bias": use_bias,
        # Non-zero biases so that the reference checks them.
        "coefficient_bias_initializer": "random_normal",
        "bias_initializer": "random_normal",
    }
    return x, z, config


# -- conformance -------------------------------------------------------------
class TestFilterGeneratorConformance(LayerConformance):
    layer_cls = FilterGenerator
    init_kwargs = {
        "filters": 4,
        "kernel_size": 3,
        "repository_size": 3,
        "padding": "same",
        "activation": "relu",
    }
    expected_output_shape = (4, 6, 6, 4)

    def make_inputs(self):
        rng = np.random.default_rng(0)
        return [
            rng.normal(size=(4, 6, 6, 2)).astype("float32"),
            rng.normal(size=(4, 5)).astype("float32"),
        ]


class TestFilterGeneratorConformancePatches(TestFilterGeneratorConformance):
    init_kwargs = {
        "filters": 2,
        "kernel_size": (3, 2),
        "repository_size": 6,
        "strides": 2,
        "implementation": "patches",
    }
    expected_output_shape = (4, 2, 3, 2)


# -- maths -------------------------------------------------------------------
@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("case", CASES)
def test_output_matches_per_sample_reference(case, path):
    x, z, config = _make_case(case, "float32")
    layer = FilterGenerator(**config, implementation=path)
    y = keras.ops.convert_to_numpy(layer([x, z]))
    expected = reference_call(x, z, layer_weights(layer), config)
    assert y.shape == expected.shape
    np.testing.assert_allclose(y, expected, rtol=1e-4, atol=1e-5)


@pytest.fixture
def float64_backend():
    """Lets the backend compute in float64 (JAX needs x64 switched on)."""
    if keras.backend.backend() == "jax":
        import jax

        with jax.enable_x64(True):
            yield
    else:
        yield


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("case", CASES)
def test_gradients_match_per_sample_reference(case, path, float64_backend):
    x, z, config = _make_case(case, "float64", seed=1)
    layer = FilterGenerator(**config, implementation=path, dtype="float64")
    layer.build([x.shape, z.shape])
    weights = layer_weights(layer)
    y_shape = layer.compute_output_shape([x.shape, z.shape])
    probe = np.random.default_rng(2).normal(size=y_shape)
    found = backend_gradients(layer, x, z, probe)
    expected = numerical_gradients(x, z, weights, config, probe)
    assert sorted(found) == sorted(expected)
    for name in expected:
        assert found[name].dtype == np.float64, name
        np.testing.assert_allclose(
            found[name], expected[name], rtol=1e-6, atol=1e-7, err_msg=name
        )


def test_generate_filters_matches_reference():
    x, z, config = _make_case(CASES[1], "float32")
    layer = FilterGenerator(**config)
    layer([x, z])
    w = layer_weights(layer)
    found = keras.ops.convert_to_numpy(layer.generate_filters(z))
    expected = reference_filters(
        z, w["repository"], w["coefficient_kernel"], w["coefficient_bias"]
    )
    assert found.shape == (2, 3, 2, 2, 2)
    np.testing.assert_allclose(found, expected, rtol=1e-5, atol=1e-6)


def test_paths_agree_and_auto_picks_the_cheaper_one():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(3, 9, 9, 4)).astype("float32")
    z = rng.normal(size=(3, 6)).astype("float32")
    outputs = {}
    for path in ("auto", *PATHS):
        keras.utils.set_random_seed(0)
        layer = FilterGenerator(2, 3, repository_size=16, implementation=path)
        outputs[path] = keras.ops.convert_to_numpy(layer([x, z]))
    np.testing.assert_allclose(outputs["mix"], outputs["patches"], atol=1e-5)
    np.testing.assert_allclose(outputs["auto"], outputs["mix"], atol=1e-5)
    # 36 * 16 + 2 * 16 multiply-adds for the mix, 36 * 3 for the patches,
    # less than half: XLA (JAX) takes the patches, TensorFlow the mix.
    cheaper = "patches" if keras.backend.backend() == "jax" else "mix"
    auto = FilterGenerator(2, 3, repository_size=16)
    assert auto._select_implementation(x.shape) == cheaper
    wide = FilterGenerator(16, 3, repository_size=4)
    assert wide._select_implementation(x.shape) == "mix"
    # 36 * 2 + 2 * 2 = 76 < 36 * 3: the mix is cheaper.
    close = FilterGenerator(2, 3, repository_size=2)
    assert close._select_implementation(x.shape) == "mix"
    # 36 * 5 + 2 * 5 = 190 < 2 * 36 * 3: not cheaper enough.
    close = FilterGenerator(2, 3, repository_size=5)
    assert close._select_implementation(x.shape) == "mix"
    forced = FilterGenerator(16, 3, repository_size=2, implementation="patches")
    assert forced._select_implementation(x.shape) == "patches"


def test_repository_is_orthonormal_at_initialisation():
    layer = FilterGenerator(5, 5, repository_size=5)
    layer.build([(None, 28, 28, 3), (None, 20)])
    base = keras.ops.convert_to_numpy(layer.repository).reshape(-1, 5)
    np.testing.assert_allclose(base.T @ base, np.eye(5), atol=1e-5)
    assert tuple(layer.coefficient_kernel.shape) == (20, 25)


def test_samples_get_different_filters():
    layer = FilterGenerator(2, 3, repository_size=3)
    rng = np.random.default_rng(4)
    x = np.repeat(rng.normal(size=(1, 5, 5, 1)), 2, axis=0).astype("float32")
    z = rng.normal(size=(2, 4)).astype("float32")
    y = keras.ops.convert_to_numpy(layer([x, z]))
    # Same image, different z: different outputs.
    assert not np.allclose(y[0], y[1])


def test_dynamic_batch_size_under_jit():
    inputs = [keras.Input((8, 8, 2)), keras.Input((3,))]
    outputs = FilterGenerator(3, 3, repository_size=2, padding="same")(inputs)
    model = keras.Model(inputs, outputs)
    rng = np.random.default_rng(5)
    for batch in (1, 5):
        x = rng.normal(size=(batch, 8, 8, 2)).astype("float32")
        z = rng.normal(size=(batch, 3)).astype("float32")
        y = model.predict([x, z], batch_size=batch, verbose=0)
        assert y.shape == (batch, 8, 8, 3)


def test_mixed_precision_output_dtype():
    layer = FilterGenerator(3, 3, repository_size=2, dtype="mixed_float16")
    x = np.ones((2, 6, 6, 1), "float32")
    z = np.ones((2, 4), "float32")
    y = layer([x, z])
    assert keras.backend.standardize_dtype(y.dtype) == "float16"
    assert keras.backend.standardize_dtype(layer.repository.dtype) == "float32"


def test_top_level_export():
    assert keras_dynfilt.FilterGenerator is FilterGenerator
    assert keras_dynfilt.layers.FilterGenerator is FilterGenerator


# -- validation --------------------------------------------------------------
@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"filters": 0}, r"`filters` must be a positive integer.*filters=0"),
        ({"filters": 2.5}, r"`filters` must be a positive integer.*2\.5"),
        ({"repository_size": 0},
         r"`repository_size` must be a positive integer.*repository_size=0"),
        ({"repository_size": True}, r"`repository_size` must be.*True"),
        ({"kernel_size": 0}, r"`kernel_size` must be.*kernel_size=0"),
        ({"kernel_size": (3, 3, 3)}, r"`kernel_size` must be.*\(3, 3, 3\)"),
        ({"strides": (1, -1)}, r"`strides` must be.*\(1, -1\)"),
        ({"dilation_rate": 0}, r"`dilation_rate` must be.*dilation_rate=0"),
        ({"padding": "causal"},
         r"`padding` must be 'valid' or 'same'.*'causal'"),
        ({"padding": 1}, r"`padding` must be 'valid' or 'same'.*1"),
        ({"implementation": "grouped"},
         r"`implementation` must be one of.*'grouped'"),
    ],
)
def test_invalid_arguments_raise(kwargs, match):
    args = {"filters": 2, "kernel_size": 3, "repository_size": 2, **kwargs}
    with pytest.raises(ValueError, match=match):
        FilterGenerator(**args)


def test_batch_mismatch_raises():
    layer = FilterGenerator(2, 3, repository_size=2)
    with pytest.raises(ValueError, match=r"same batch size.*\(3, 5, 5, 1\)"):
        layer([np.ones((3, 5, 5, 1), "float32"), np.ones((2, 4), "float32")])


def test_batch_mismatch_after_build_raises():
    layer = FilterGenerator(2, 3, repository_size=2)
    layer([np.ones((2, 5, 5, 1), "float32"), np.ones((2, 4), "float32")])
    with pytest.raises(ValueError, match=r"same batch size.*z.shape=\(3, 4\)"):
        layer([np.ones((2, 5, 5, 1), "float32"), np.ones((3, 4), "float32")])


@pytest.mark.parametrize(
    "shapes, match",
    [
        ([(2, 5, 5, 1), (2, 4, 1)], r"`z` must be of rank 2.*\(2, 4, 1\)"),
        ([(2, 5, 5, 1), (2,)], r"`z` must be of rank 2.*\(2,\)"),
        ([(2, 5, 5), (2, 4)], r"`x` must be of rank 4.*\(2, 5, 5\)"),
        ([(2, 5, 5, None), (2, 4)], r"channel dimension of `x`.*None"),
        ([(2, 5, 5, 1), (2, None)], r"feature dimension of `z`.*None"),
        ([(2, 2, 5, 1), (2, 4)], r"smaller than the dilated kernel"),
    ],
)
def test_invalid_input_shapes_raise(shapes, match):
    with pytest.raises(ValueError, match=match):
        FilterGenerator(2, 3, repository_size=2).build(shapes)


def test_single_input_raises():
    with pytest.raises(ValueError, match=r"list of two inputs \[x, z\]"):
        FilterGenerator(2, 3, repository_size=2).build((2, 5, 5, 1))
