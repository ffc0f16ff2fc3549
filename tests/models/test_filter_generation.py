import keras
import numpy as np
import pytest

from keras_dynfilt.layers import DimensionReduction, FilterGenerator
from keras_dynfilt.models import (
    filter_generation_network,
    sample_specificity,
    swapped_filter_model,
)
from tests.harness import keras_test_case


def _compile(model):
    losses = {
        "reconstruction": "binary_crossentropy",
        "logits": keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    }
    if len(model.outputs) == 1:
        losses = losses["logits"]
    model.compile(optimizer="adam", loss=losses, jit_compile=True)


def _data(n=16, shape=(28, 28, 1), classes=10, seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((n, *shape)).astype("float32"), np.arange(n) % classes


def test_paper_mnist_structure():
    model = filter_generation_network((28, 28, 1), 10, encoder_filters=20,
                                      repository_size=5)
    assert {k: tuple(o.shape) for k, o in model.output.items()} == {
        "reconstruction": (None, 28, 28, 1), "logits": (None, 10)
    }
    # Table 5: the encoder, 28x28 then 14x14.
    assert model.get_layer("enc1_conv").strides == (1, 1)
    assert model.get_layer("enc2_conv").strides == (2, 2)
    assert model.get_layer("enc2_bn").output.shape[1:] == (14, 14, 20)
    # Table 4 with generated filters: 24x24x5 -> 12 -> 8x8x5 -> 4.
    for level, size in ((1, 24), (2, 8)):
        conv = model.get_layer(f"conv{level}")
        assert isinstance(conv, FilterGenerator)
        assert conv.repository_size == 5 and conv.filters == 5
        assert conv.output.shape[1:] == (size, size, 5)
        reduce = model.get_layer(f"reduce{level}")
        assert isinstance(reduce, DimensionReduction)
        assert reduce.output.shape[1:] == (20,)
    # z_l comes from the pre-activation (conv+BN) map of encoder layer l.
    assert model.get_layer("reduce1").input is model.get_layer(
        "enc1_bn").output
    assert model.get_layer("flatten").output.shape[1:] == (80,)


def test_baseline_is_table_4():
    model = filter_generation_network(
        (28, 28, 1), 10, filter_generation=False
    )
    assert [tuple(o.shape) for o in model.outputs] == [(None, 10)]
    assert not any(isinstance(layer, FilterGenerator) for layer in
                   model.layers)
    # conv 5x5x1x5 + 5, conv 5x5x5x5 + 5, dense 80x10 + 10.
    assert model.count_params() == 130 + 630 + 810


@pytest.mark.parametrize(
    "shape", [(28, 28, 1), (32, 32, 3), (27, 25, 1)]
)
def test_shapes_follow_the_input(shape):
    model = filter_generation_network(shape, 4, encoder_filters=3,
                                      repository_size=2, filters=(2, 3))
    x, _ = _data(2, shape)
    outputs = model(x)
    assert tuple(outputs["reconstruction"].shape) == (2, *shape)
    assert tuple(outputs["logits"].shape) == (2, 4)


def test_three_level_network_builds():
    model = filter_generation_network((32, 32, 1), 3, encoder_filters=4,
                                      repository_size=2, filters=(2, 2, 2),
                                      kernel_size=3)
    assert model.get_layer("reduce3").output.shape[1:] == (4,)
    # Three generated convolutions, each conditioned on its own z_l.
    for level in (1, 2, 3):
        conv = model.get_layer(f"conv{level}")
        assert isinstance(conv, FilterGenerator) and conv.kernel_size == (3, 3)
        assert conv.input[1] is model.get_layer(f"reduce{level}").output
    # The decoder undoes the two stride-2 encoder layers (8 -> 16 -> 32),
    # with a conv block between the upsamplings and none after the last.
    assert [
        (layer.name, tuple(layer.output.shape[1:]))
        for layer in model.layers
        if layer.name.startswith("dec")
    ] == [
        ("dec1_upsample", (16, 16, 4)),
        ("dec1_conv", (16, 16, 4)),
        ("dec1_bn", (16, 16, 4)),
        ("dec1_lrelu", (16, 16, 4)),
        ("dec2_upsample", (32, 32, 4)),
        ("decoder_output", (32, 32, 1)),
    ]
    assert model.get_layer("dec1_conv").kernel.shape == (3, 3, 4, 4)
    assert model.output["reconstruction"].shape[1:] == (32, 32, 1)


def test_fit_with_xla_and_save_load(tmp_path):
    model = filter_generation_network((28, 28, 1), 10, encoder_filters=5)
    _compile(model)
    x, y = _data()
    history = model.fit(x, {"reconstruction": x, "logits": y}, batch_size=8,
                        epochs=2, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
    path = tmp_path / "fg.keras"
    model.save(path)
    restored = keras.saving.load_model(path, safe_mode=True)
    expected, found = model.predict(x, verbose=0), restored.predict(
        x, verbose=0)
    for key in ("reconstruction", "logits"):
        keras_test_case().assertAllClose(found[key], expected[key])


def test_baseline_fits():
    model = filter_generation_network((28, 28, 1), 10,
                                      filter_generation=False)
    _compile(model)
    x, y = _data()
    # The untrained model's loss is the NumPy cross-entropy of its logits.
    logits = model.predict(x, verbose=0).astype("float64")
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_p = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    before = -log_p[np.arange(len(y)), y].mean()
    assert model.evaluate(x, y, verbose=0) == pytest.approx(before, rel=1e-5)
    weights = [w.numpy() for w in model.trainable_weights]
    model.fit(x, y, batch_size=8, epochs=3, verbose=0)
    # Six Adam steps lower the loss, and every layer's weights moved.
    assert model.evaluate(x, y, verbose=0) < before - 0.05
    moved = [
        w.path for w, old in zip(model.trainable_weights, weights)
        if not np.allclose(w.numpy(), old)
    ]
    assert moved == [w.path for w in model.trainable_weights]


def test_swapped_filter_model_shares_weights():
    model = filter_generation_network((28, 28, 1), 10, encoder_filters=5)
    swapped = swapped_filter_model(model)
    x, _ = _data(4)
    own = swapped.predict([x, x], verbose=0)
    keras_test_case().assertAllClose(
        own, model.predict(x, verbose=0)["logits"], atol=1e-5
    )
    other = swapped.predict([x, x[::-1]], verbose=0)
    assert not np.allclose(own, other)
    assert {id(v) for v in swapped.weights} <= {id(v) for v in model.weights}


def test_sample_specificity_pairs_distinct_images():
    model = filter_generation_network((28, 28, 1), 10, encoder_filters=5)
    x, y = _data(10)  # ten distinct labels
    result = sample_specificity(model, x, y, seed=3)
    assert set(result) == {"accuracy", "swapped_accuracy",
                           "swapped_accuracy_vs_b_label", "same_label_pairs"}
    assert result["same_label_pairs"] == 0.0  # never paired with itself
    logits = model.predict(x, verbose=0)["logits"]
    assert result["accuracy"] == np.mean(logits.argmax(-1) == y)


def test_sample_specificity_needs_a_generating_model():
    baseline = filter_generation_network((28, 28, 1), 10,
                                         filter_generation=False)
    with pytest.raises(ValueError, match=r"filter_generation=True"):
        swapped_filter_model(baseline)


def test_sample_specificity_checks_lengths():
    model = filter_generation_network((28, 28, 1), 10, encoder_filters=5)
    x, y = _data(4)
    with pytest.raises(ValueError, match=r"same length >= 2.*4 images and 3"):
        sample_specificity(model, x, y[:3])


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"input_shape": (28, 28)}, r"`input_shape` must be.*\(28, 28\)"),
        ({"input_shape": (12, 12, 1)}, r"too small for 2 valid 5x5"),
        ({"num_classes": 1}, r"`num_classes` must be an integer >= 2.*1"),
        ({"encoder_filters": 0}, r"`encoder_filters` must be a positive"),
        ({"repository_size": -1}, r"`repository_size` must be a positive"),
        ({"kernel_size": 0}, r"`kernel_size` must be a positive"),
        ({"filters": ()}, r"`filters` must be a non-empty tuple.*\(\)"),
        ({"filters": (5, 0)}, r"`filters` must be a non-empty.*\(5, 0\)"),
    ],
)
def test_invalid_arguments_raise(kwargs, match):
    args = {"input_shape": (28, 28, 1), "num_classes": 10, **kwargs}
    with pytest.raises(ValueError, match=match):
        filter_generation_network(**args)
