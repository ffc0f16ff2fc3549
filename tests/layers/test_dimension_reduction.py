import keras
import numpy as np
import pytest

import keras_dynfilt
from keras_dynfilt.layers import DimensionReduction
from keras_dynfilt.layers.dimension_reduction import reduction_schedule
from tests.harness import LayerConformance


class TestDimensionReductionConformance(LayerConformance):
    layer_cls = DimensionReduction
    init_kwargs = {"units": 3, "filters": 4, "negative_slope": 0.1,
                   "momentum": 0.8}
    expected_output_shape = (4, 3)

    def make_inputs(self):
        return np.random.default_rng(0).normal(size=(4, 14, 10, 2)).astype(
            "float32"
        )


@pytest.mark.parametrize(
    "size, strides, final",
    [
        # Paper tables 6 and 7 (MNIST, 28x28 and 14x14 maps).
        (28, [4, 3], 3),
        (14, [2, 3], 3),
        # Tables 10-14 (MTFL) and 17-20 (CIFAR10).
        (64, [4, 4], 4),
        (32, [4, 4], 2),
        (16, [4], 4),
        (8, [4], 2),
        (4, [], 4),
        (1, [], 1),
    ],
)
def test_schedule_matches_the_paper_tables(size, strides, final):
    stages, last = reduction_schedule(size, size)
    assert stages == [(s, s) for s in strides]
    assert last == (final, final)


def test_schedule_pads_the_shorter_axis_with_stride_one():
    stages, last = reduction_schedule(28, 8)
    assert stages == [(4, 4), (3, 1)]
    assert last == (3, 2)


def test_layers_follow_table_6():
    layer = DimensionReduction(20)
    layer.build((None, 28, 28, 20))
    convs = [b for b in layer.blocks if isinstance(b, keras.layers.Conv2D)]
    assert [c.kernel_size for c in convs] == [(4, 4), (3, 3), (3, 3)]
    assert [c.strides for c in convs] == [(4, 4), (3, 3), (1, 1)]
    shape = (None, 28, 28, 20)
    sizes = []
    for block in layer.blocks:
        shape = block.compute_output_shape(shape)
        if isinstance(block, keras.layers.Conv2D):
            sizes.append(shape[1:])
    assert sizes == [(7, 7, 20), (3, 3, 20), (1, 1, 20)]
    assert layer.dense.units == 20


@pytest.mark.parametrize("shape", [(2, 28, 28, 3), (2, 13, 7, 2), (2, 1, 1, 4)])
def test_output_shape_for_any_input_size(shape):
    x = np.random.default_rng(1).normal(size=shape).astype("float32")
    y = DimensionReduction(5)(x)
    assert tuple(y.shape) == (2, 5)


def test_matches_numpy_reference_in_inference():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(3, 8, 8, 2)).astype("float32")
    layer = DimensionReduction(4, filters=3, negative_slope=0.2)
    layer.build(x.shape)
    for block in layer.blocks:  # non-trivial batch-norm statistics
        if isinstance(block, keras.layers.BatchNormalization):
            for v in block.weights:
                v.assign(rng.uniform(0.5, 1.5, size=v.shape))
    y = keras.ops.convert_to_numpy(layer(x, training=False))

    def lrelu(v):
        return np.where(v > 0, v, 0.2 * v)

    def weights(block):
        return [np.asarray(keras.ops.convert_to_numpy(w), np.float64)
                for w in block.weights]

    h = np.asarray(x, np.float64)
    blocks = layer.blocks
    for i in range(0, len(blocks), 3):
        conv, bn = blocks[i], blocks[i + 1]
        (kernel,) = weights(conv)
        k = kernel.shape[0]
        s = conv.strides[0]
        out = h.shape[1] // s if i + 3 < len(blocks) else h.shape[1] - k + 1
        h = np.stack(
            [
                np.stack(
                    [
                        np.einsum(
                            "bhwc,hwcn->bn",
                            h[:, r * s: r * s + k, c * s: c * s + k],
                            kernel,
                        )
                        for c in range(out)
                    ],
                    1,
                )
                for r in range(out)
            ],
            1,
        )
        gamma, beta, mean, var = weights(bn)
        h = lrelu(gamma * (h - mean) / np.sqrt(var + bn.epsilon) + beta)
    kernel, bias = weights(layer.dense)
    expected = lrelu(h.reshape(len(x), -1) @ kernel + bias)
    np.testing.assert_allclose(y, expected, rtol=1e-4, atol=1e-5)


def test_training_uses_batch_statistics():
    x = np.random.default_rng(3).normal(3.0, 2.0, size=(4, 8, 8, 2))
    layer = DimensionReduction(2)
    a = keras.ops.convert_to_numpy(layer(x.astype("float32"), training=True))
    b = keras.ops.convert_to_numpy(layer(x.astype("float32"), training=False))
    assert not np.allclose(a, b)


def test_mixed_precision():
    layer = DimensionReduction(3, dtype="mixed_float16")
    y = layer(np.ones((2, 8, 8, 2), "float32"))
    assert keras.backend.standardize_dtype(y.dtype) == "float16"


def test_top_level_export():
    assert keras_dynfilt.DimensionReduction is DimensionReduction
    assert keras_dynfilt.layers.DimensionReduction is DimensionReduction


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"units": 0}, r"`units` must be a positive integer.*units=0"),
        ({"units": 2.0}, r"`units` must be a positive integer.*2\.0"),
        ({"units": 2, "filters": 0}, r"`filters` must be None or.*filters=0"),
        ({"units": 2, "negative_slope": -0.1},
         r"`negative_slope` must be a finite non-negative number.*-0\.1"),
        ({"units": 2, "momentum": 1.0},
         r"`momentum` must be a finite number in \[0, 1\).*1\.0"),
    ],
)
def test_invalid_arguments_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DimensionReduction(**kwargs)


@pytest.mark.parametrize(
    "shape", [(None, 8, 8), (None, None, 8, 2), (None, 8, 8, None)]
)
def test_invalid_input_shapes_raise(shape):
    with pytest.raises(ValueError, match=r"known height, width and channels"):
        DimensionReduction(2).build(shape)
