import keras
import numpy as np
import pytest

from keras_dynfilt.pruning import compact, filter_groups, inference_latency


def _model():
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu")(inputs)
    x = keras.layers.Conv2D(16, 3, padding="same")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(4)(x))


def test_times_every_model_in_order():
    full = _model()
    groups = filter_groups(full)
    small = compact(full, masks={g: np.arange(g.size) < 2 for g in groups})
    x = np.random.default_rng(0).random((2, 8, 8, 3)).astype("float32")
    seconds = inference_latency([full, small], x, repeats=3, calls=2)
    assert len(seconds) == 2
    assert all(isinstance(s, float) and s > 0 for s in seconds)
    # One model alone is a list of one.
    assert len(inference_latency(small, x, repeats=1)) == 1


@pytest.mark.parametrize("models", [[], "model", [object()], None])
def test_rejects_what_is_not_a_list_of_models(models):
    with pytest.raises(TypeError, match=r"`models` must be .*Received"):
        inference_latency(models, np.zeros((1, 8, 8, 3), "float32"))


@pytest.mark.parametrize("name", ["repeats", "calls"])
@pytest.mark.parametrize("value", [0, -1, 1.5, True])
def test_rejects_bad_counts(name, value):
    with pytest.raises(ValueError, match=rf"`{name}` must be a positive"):
        inference_latency(
            [_model()], np.zeros((1, 8, 8, 3), "float32"), **{name: value}
        )
