"""Bad input that reaches a method or a compiled step rather than a
constructor: `FilterGenerator.generate_filters`, `swapped_filter_model`
and `sample_specificity` given something that is not a model, and
`WSoftmaxHead` labels outside `[0, num_classes)` inside `model.fit`."""

import keras
import numpy as np
import pytest

from keras_dynfilt.layers import FilterGenerator, WSoftmaxHead
from keras_dynfilt.models import sample_specificity, swapped_filter_model


def _built_generator():
    layer = FilterGenerator(4, 3, repository_size=2)
    layer([keras.Input((8, 8, 1)), keras.Input((6,))])
    return layer


@pytest.mark.parametrize("shape", [(2, 5), (2, 7), (6,), (2, 6, 1)])
def test_generate_filters_wrong_z_shape(shape):
    layer = _built_generator()
    with pytest.raises(ValueError, match=r"`z`.*\(batch_size, 6\)") as info:
        layer.generate_filters(np.ones(shape, "float32"))
    assert f"Received: z.shape={shape}" in str(info.value)


def test_generate_filters_right_z_shape():
    kernels = _built_generator().generate_filters(np.ones((2, 6), "float32"))
    assert tuple(kernels.shape) == (2, 3, 3, 1, 4)


def test_generate_filters_on_an_unbuilt_layer():
    layer = FilterGenerator(4, 3, repository_size=2, name="gen")
    with pytest.raises(ValueError, match="'gen' is not built") as info:
        layer.generate_filters(np.ones((2, 6), "float32"))
    assert "generate_filters" in str(info.value)


@pytest.mark.parametrize("model", ["str", None, 3, keras.layers.Dense(2)])
def test_swapped_filter_model_not_a_model(model):
    with pytest.raises(TypeError, match="`model` must be a keras.Model"):
        swapped_filter_model(model)
    with pytest.raises(TypeError, match="`model` must be a keras.Model"):
        sample_specificity(model, np.zeros((2, 8, 8, 1)), np.zeros(2))


def _wsoftmax_model():
    features = keras.Input((4,), name="features")
    labels = keras.Input((), dtype="int32", name="labels")
    head = WSoftmaxHead(3, alpha=1.0)
    model = keras.Model([features, labels], head(features, labels=labels))
    model.compile(
        "sgd",
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=False,
    )
    return model


@pytest.mark.tensorflow
@pytest.mark.parametrize("bad", [-1, 3, 100])
def test_wsoftmax_labels_out_of_range_in_a_compiled_step(bad):
    # A traced TensorFlow step (tf.function, no XLA): the assertion fires
    # when the step runs, naming the range.
    import tensorflow as tf

    model = _wsoftmax_model()
    x = np.ones((4, 4), "float32")
    labels = np.array([0, 1, 2, bad], "int32")
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"\[0, 3\)"):
        model.fit([x, labels], np.zeros(4, "int32"), epochs=1, verbose=0)


@pytest.mark.tensorflow
def test_wsoftmax_labels_in_range_in_a_compiled_step():
    model = _wsoftmax_model()
    x = np.ones((4, 4), "float32")
    labels = np.array([0, 1, 2, 2], "int32")
    history = model.fit([x, labels], labels, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
