import keras
import numpy as np
import pytest

from keras_dynfilt.layers import MFM
from keras_dynfilt.models import light_cnn
from tests.harness import keras_test_case, mirrored_strategy


@pytest.mark.parametrize(
    "input_shape", [(28, 28, 1), (8, 8, 1), (32, 32, 3), (128, 128, 1)]
)
def test_shapes_follow_the_input_size(input_shape):
    model = light_cnn(input_shape, 10, width_multiplier=0.125)
    assert model.output_shape == (None, 10)
    x = np.zeros((2, *input_shape), "float32")
    assert model(x).shape == (2, 10)


def test_full_width_structure_matches_lightcnn_9():
    model = light_cnn((128, 128, 1), 79077)
    convs = [
        layer
        for layer in model.layers
        if isinstance(layer, keras.layers.Conv2D)
    ]
    # conv1 + 4 groups x (1x1, 3x3), each producing 2x the MFM width.
    assert [c.filters for c in convs] == [
        96,
        96,
        192,
        192,
        384,
        384,
        256,
        256,
        256,
    ]
    assert [c.kernel_size for c in convs] == [(5, 5)] + [(1, 1), (3, 3)] * 4
    assert sum(isinstance(layer, MFM) for layer in model.layers) == 10
    assert model.get_layer("fc1_dense").units == 512
    # 128 -> 64 -> 32 -> 16 -> 8: the 8x8x128 flatten of the paper.
    assert model.get_layer("flatten").output.shape[-1] == 8 * 8 * 128


def test_save_load_safe_mode_and_fit_with_xla(tmp_path):
    model = light_cnn((16, 16, 1), 4, width_multiplier=0.125, dropout=0.2)
    x = np.random.default_rng(0).random((16, 16, 16, 1)).astype("float32")
    y = np.arange(16) % 4
    model.compile(
        optimizer="adam",
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=True,
    )
    history = model.fit(x, y, batch_size=8, epochs=2, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
    path = tmp_path / "light_cnn.keras"
    model.save(path)
    restored = keras.saving.load_model(path, safe_mode=True)
    keras_test_case().assertAllClose(
        restored.predict(x, verbose=0), model.predict(x, verbose=0)
    )


@pytest.mark.tensorflow
def test_mirrored_strategy_same_loss():
    import tensorflow as tf

    x = np.random.default_rng(0).random((32, 12, 12, 1)).astype("float32")
    y = np.arange(32) % 3

    def fit(strategy, weights=None):
        with strategy.scope():
            model = light_cnn(
                (12, 12, 1), 3, width_multiplier=0.125, dropout=0.0
            )
            if weights is not None:
                model.set_weights(weights)
            model.compile(
                optimizer=keras.optimizers.SGD(0.05),
                loss=keras.losses.SparseCategoricalCrossentropy(
                    from_logits=True
                ),
            )
        initial = model.get_weights()
        loss = model.fit(
            x, y, batch_size=8, epochs=2, shuffle=False, verbose=0
        ).history["loss"]
        return initial, loss

    initial, single = fit(tf.distribute.get_strategy())
    _, mirrored = fit(mirrored_strategy(), initial)
    np.testing.assert_allclose(mirrored, single, rtol=1e-5)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"variant": "29"}, r"`variant` must be one of \['9'\].*'29'"),
        ({"num_classes": 1}, r"`num_classes` must be an integer >= 2.*1"),
        ({"width_multiplier": 0}, r"`width_multiplier`.*Received.*0"),
        ({"dropout": 1.0}, r"`dropout` must be .*\[0, 1\).*1.0"),
        ({"input_shape": (28, 28)}, r"`input_shape` must be.*\(28, 28\)"),
    ],
)
def test_invalid_arguments_raise(kwargs, match):
    args = {"input_shape": (28, 28, 1), "num_classes": 10, **kwargs}
    with pytest.raises(ValueError, match=match):
        light_cnn(**args)
