import keras
import numpy as np
import pytest

import keras_dynfilt
from keras_dynfilt.layers import ChannelPadding
from tests.harness import LayerConformance


class TestChannelPaddingConformance(LayerConformance):
    layer_cls = ChannelPadding
    init_kwargs = {"padding": (1, 2)}
    expected_output_shape = (4, 5, 5, 6)

    def make_inputs(self):
        return np.random.default_rng(0).normal(size=(4, 5, 5, 3)).astype(
            "float32"
        )


@pytest.mark.parametrize("padding", [(0, 3), (2, 0), (1, 1), 2])
def test_matches_numpy_reference(padding):
    x = np.random.default_rng(1).normal(size=(2, 3, 4, 5)).astype("float32")
    pad = (padding, padding) if isinstance(padding, int) else padding
    expected = np.pad(x.astype(np.float64), [(0, 0)] * 3 + [pad])
    found = keras.ops.convert_to_numpy(ChannelPadding(padding)(x))
    np.testing.assert_array_equal(found, expected)


def test_dense_input_and_top_level_export():
    x = np.ones((2, 3), "float32")
    y = keras_dynfilt.layers.ChannelPadding((1, 0))(x)
    np.testing.assert_array_equal(y, [[0, 1, 1, 1]] * 2)


@pytest.mark.parametrize("padding", [-1, (1, -2), (1, 2, 3), "1", (1.0, 2)])
def test_invalid_padding_raises(padding):
    with pytest.raises(ValueError, match=r"`padding` must be.*Received"):
        ChannelPadding(padding)


def test_rank_one_input_raises():
    with pytest.raises(ValueError, match=r"rank >= 2.*Received: input_shape"):
        ChannelPadding(1).build((3,))
