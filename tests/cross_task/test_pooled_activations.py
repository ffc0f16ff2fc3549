import keras
import numpy as np
import pytest

from keras_dynfilt import cross_task
from keras_dynfilt.layers import MFM

L = keras.layers


@pytest.fixture(scope="module")
def model():
    inputs = keras.Input((8, 8, 3))
    x = L.Conv2D(6, 3, padding="same", name="conv1")(inputs)
    x = L.BatchNormalization(name="bn1")(x)
    x = L.ReLU(name="relu1")(x)
    x = L.MaxPooling2D(name="pool")(x)
    x = L.Conv2D(8, 3, padding="same", name="conv2")(x)
    x = MFM(name="mfm2")(x)
    x = L.Flatten(name="flatten")(x)
    x = L.Dense(5, activation="relu", name="fc")(x)
    outputs = L.Dense(2, name="logits")(x)
    model = keras.Model(inputs, outputs)
    rng = np.random.default_rng(0)
    model.get_layer("bn1").set_weights([
        rng.uniform(0.5, 2, 6), rng.normal(size=6), rng.normal(size=6),
        rng.uniform(0.5, 2, 6)])
    return model


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(2)
    return (rng.normal(size=(70, 8, 8, 3)).astype("float32"),
            rng.normal(size=70).astype("float32"))


def test_default_probes_follow_bn_activation_and_mfm(model, images):
    x, y = images
    acts = cross_task.pooled_activations(model, (x, y), batch_size=32)
    assert list(acts.features) == ["conv1", "conv2"]
    assert acts.points == {"conv1": "relu1", "conv2": "mfm2"}
    assert acts.features["conv1"].shape == (70, 6)
    assert acts.features["conv2"].shape == (70, 4)  # MFM halves
    np.testing.assert_array_equal(acts.labels, y)
    assert acts.seconds > 0 and len(acts) == 70


def test_pooled_features_equal_the_mean_over_height_and_width(model, images):
    x, _ = images
    acts = cross_task.pooled_activations(model, x, layers=["conv1", "pool",
                                                           "fc"])
    for name, point in (("conv1", "relu1"), ("pool", "pool")):
        maps = keras.Model(model.inputs[0], model.get_layer(point).output)(x)
        expected = keras.ops.convert_to_numpy(
            keras.ops.mean(maps, axis=(1, 2)))
        np.testing.assert_allclose(acts.features[name], expected, rtol=1e-5,
                                   atol=1e-6)
    # A layer without spatial axes is read as is (after its activation).
    dense = keras.Model(model.inputs[0], model.get_layer("fc").output)(x)
    np.testing.assert_allclose(acts.features["fc"],
                               keras.ops.convert_to_numpy(dense), rtol=1e-5,
                               atol=1e-6)
    assert acts.labels is None


@pytest.mark.tensorflow
def test_tf_data_pairs_features_and_labels_from_one_pass(model, images):
    import tensorflow as tf

    x, y = images
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).shuffle(
        70, seed=1).batch(16)
    acts = cross_task.pooled_activations(model, dataset, layers=["conv1"])
    reference = cross_task.pooled_activations(model, x, layers=["conv1"])
    order = [int(np.flatnonzero(y == label)[0]) for label in acts.labels]
    np.testing.assert_allclose(acts.features["conv1"],
                               reference.features["conv1"][order],
                               rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="batched already"):
        cross_task.pooled_activations(model, dataset, batch_size=4)


def test_bad_inputs(model, images):
    x, y = images
    with pytest.raises(ValueError, match="not a layer of model"):
        cross_task.pooled_activations(model, x, layers=["nope"])
    with pytest.raises(ValueError, match="same length"):
        cross_task.pooled_activations(model, (x, y[:-1]))
    inputs = keras.Input((4, 4, 2))
    total = keras.ops.sum(L.Conv2D(3, 1, name="c")(inputs), axis=(1, 2, 3))
    flat = keras.Model(inputs, total)
    name = flat.operations[-1].name  # the `sum` node, output (batch,)
    with pytest.raises(ValueError, match="has no channels to probe"):
        cross_task.pooled_activations(flat, x[:, :4, :4, :2], layers=[name])
