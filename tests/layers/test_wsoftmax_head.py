import keras
import numpy as np
import pytest

import keras_dynfilt
from keras_dynfilt.layers import WSoftmaxHead
from tests.harness import LayerConformance


# -- float64 NumPy reference -------------------------------------------------
def normalized(kernel):
    kernel = np.asarray(kernel, np.float64)
    return kernel / np.linalg.norm(kernel, axis=0, keepdims=True)


def wsoftmax_reference(features, kernel, labels=None, alpha=1.0):
    """The paper's definition, one biased weight vector at a time."""
    x = np.asarray(features, np.float64)
    w = normalized(kernel)
    logits = x @ w
    if labels is None:
        return logits
    labels = np.asarray(labels).reshape(-1)
    out = logits.copy()
    for b, y in enumerate(labels):
        for j in range(w.shape[1]):
            if j == y:
                continue
            biased = w[:, j] + alpha * w[:, y]
            out[b, j] = x[b] @ (biased / np.linalg.norm(biased))
    return out


def cross_entropy(logits, labels):
    logits = logits - logits.max(axis=1, keepdims=True)
    log_probs = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    return -log_probs[np.arange(len(labels)), labels].mean()


def numeric_gradient(fn, value, step=1e-6):
    """Central differences of a scalar float64 function."""
    value = np.array(value, np.float64)
    grad = np.zeros_like(value)
    for index in np.ndindex(value.shape):
        up, down = value.copy(), value.copy()
        up[index] += step
        down[index] -= step
        grad[index] = (fn(up) - fn(down)) / (2 * step)
    return grad


def layer_gradients(layer, features, labels, dynamic_batch=False):
    """d(mean W-Softmax cross-entropy) / d(features, kernel), autodiff.

    `dynamic_batch` (TensorFlow only) traces a graph with an unknown batch
    size, as `model.fit` on a `tf.data` pipeline does.
    """
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        def gradients(x, y):
            with tf.GradientTape() as tape:
                tape.watch(x)
                loss = loss_fn(y, layer(x, labels=y, training=True))
            return tape.gradient(loss, [x, layer.kernel.value])

        if dynamic_batch:
            gradients = tf.function(
                gradients,
                input_signature=[
                    tf.TensorSpec((None, features.shape[1]), "float32"),
                    tf.TensorSpec((None,), "int32"),
                ],
            )
        dx, dk = gradients(tf.constant(features), tf.constant(labels))
        return np.asarray(dx), np.asarray(dk)
    if keras.backend.backend() == "torch":
        import torch

        x, y = torch.tensor(features, requires_grad=True), torch.tensor(labels)
        loss = loss_fn(y, layer(x, labels=y, training=True))
        dx, dk = torch.autograd.grad(loss, [x, layer.kernel.value])
        return dx.numpy(), dk.numpy()
    import jax

    def loss(x, kernel):
        logits, _ = layer.stateless_call(
            [kernel], [], x, labels=labels, training=True
        )
        return loss_fn(labels, logits)

    dx, dk = jax.grad(loss, argnums=(0, 1))(
        features, keras.ops.convert_to_tensor(layer.kernel)
    )
    return np.asarray(dx), np.asarray(dk)


def make_data(batch, dim, num_classes, seed=0):
    rng = np.random.default_rng(seed)
    features = rng.normal(size=(batch, dim)).astype("float32")
    labels = rng.integers(0, num_classes, size=batch).astype("int32")
    return features, labels


# -- conformance --------------------------------------------------------------
class TestWSoftmaxHeadConformanceWithLabels(LayerConformance):
    layer_cls = WSoftmaxHead
    init_kwargs = {"num_classes": 5, "alpha": 1.0}
    expected_output_shape = (8, 5)

    def make_inputs(self):
        return make_data(8, 6, 5)[0]

    def make_tensor_kwargs(self):
        return {"labels": make_data(8, 6, 5)[1]}


class TestWSoftmaxHeadConformanceInference(LayerConformance):
    layer_cls = WSoftmaxHead
    init_kwargs = {
        "num_classes": 3,
        "alpha": 0.5,
        "kernel_initializer": "orthogonal",
        "kernel_regularizer": "l2",
        "kernel_constraint": "max_norm",
    }
    expected_output_shape = (4, 3)

    def make_inputs(self):
        return make_data(4, 7, 3, seed=1)[0]


# -- the maths ----------------------------------------------------------------
@pytest.mark.parametrize("alpha", [0.0, 0.5, 1.0, 1.5, 4.0])
@pytest.mark.parametrize(
    "batch, num_classes",
    [(3, 6), (12, 6), (7, 2)],  # Gram rows of the labels, full Gram
)
def test_logits_match_reference(alpha, batch, num_classes):
    features, labels = make_data(batch, 9, num_classes, seed=2)
    layer = WSoftmaxHead(num_classes, alpha=alpha)
    layer.build(features.shape)
    kernel = keras.ops.convert_to_numpy(layer.kernel)
    expected = wsoftmax_reference(features, kernel, labels, alpha)
    found = keras.ops.convert_to_numpy(
        layer(features, labels=labels, training=True)
    )
    np.testing.assert_allclose(found, expected, rtol=1e-5, atol=1e-5)
    plain = keras.ops.convert_to_numpy(layer(features, training=False))
    np.testing.assert_allclose(
        plain, wsoftmax_reference(features, kernel), rtol=1e-5, atol=1e-5
    )


@pytest.mark.parametrize("label_shape", ["flat", "column"])
@pytest.mark.parametrize("dtype", ["int32", "int64", "uint8"])
def test_label_shapes_and_dtypes(label_shape, dtype):
    features, labels = make_data(5, 4, 3, seed=3)
    labels = labels.astype(dtype)
    if label_shape == "column":
        labels = labels[:, None]
    layer = WSoftmaxHead(3, alpha=1.5)
    found = keras.ops.convert_to_numpy(
        layer(features, labels=labels, training=True)
    )
    kernel = keras.ops.convert_to_numpy(layer.kernel)
    expected = wsoftmax_reference(features, kernel, labels, 1.5)
    np.testing.assert_allclose(found, expected, rtol=1e-5, atol=1e-5)


def test_true_class_logit_is_unchanged_and_negatives_rise():
    features, labels = make_data(16, 8, 5, seed=4)
    layer = WSoftmaxHead(5, alpha=1.0)
    plain = keras.ops.convert_to_numpy(layer(features))
    biased = keras.ops.convert_to_numpy(
        layer(features, labels=labels, training=True)
    )
    rows = np.arange(len(labels))
    np.testing.assert_array_equal(biased[rows, labels], plain[rows, labels])
    # The biased weight leans towards ŵ_y: where the true class scores
    # z_y > 0, every negative that beat it still does (z̃_j >= z_y follows
    # from z_j >= z_y since ||ŵ_j + α ŵ_y|| <= 1 + α), and new ones do: the
    # decision margin.
    negatives = np.ones_like(plain, bool)
    negatives[rows, labels] = False
    negatives &= plain[rows, labels][:, None] > 0
    beats_plain = plain > plain[rows, labels][:, None]
    beats_biased = biased > plain[rows, labels][:, None]
    assert not np.any(beats_plain & negatives & ~beats_biased)
    assert np.any(beats_biased & negatives & ~beats_plain)


@pytest.mark.parametrize("alpha", [0.0, 1.0, 1.5])
@pytest.mark.parametrize(
    "batch, num_classes, dynamic_batch",
    [
        (4, 4, False),  # full Gram
        (2, 6, False),  # Gram rows of the labels
        (4, 4, True),  # the `cond` between them, batch size unknown
        (2, 6, True),
    ],
)
def test_gradients_match_reference(alpha, batch, num_classes, dynamic_batch):
    if dynamic_batch and keras.backend.backend() != "tensorflow":
        pytest.skip("JAX traces with static shapes")
    features, labels = make_data(batch, 5, num_classes, seed=5)
    layer = WSoftmaxHead(num_classes, alpha=alpha)
    layer.build(features.shape)
    kernel = keras.ops.convert_to_numpy(layer.kernel).astype(np.float64)
    dx, dk = layer_gradients(layer, features, labels, dynamic_batch)

    def loss_of_x(x):
        return cross_entropy(
            wsoftmax_reference(x, kernel, labels, alpha), labels
        )

    def loss_of_kernel(k):
        return cross_entropy(
            wsoftmax_reference(features, k, labels, alpha), labels
        )

    np.testing.assert_allclose(
        dx, numeric_gradient(loss_of_x, features), rtol=1e-4, atol=1e-5
    )
    np.testing.assert_allclose(
        dk, numeric_gradient(loss_of_kernel, kernel), rtol=1e-4, atol=1e-5
    )


def test_alpha_zero_is_softmax_with_normalised_weights():
    features, labels = make_data(10, 6, 4, seed=6)
    layer = WSoftmaxHead(4, alpha=0.0)
    training = keras.ops.convert_to_numpy(
        layer(features, labels=labels, training=True)
    )
    inference = keras.ops.convert_to_numpy(layer(features))
    np.testing.assert_array_equal(training, inference)
    # The biasing formula itself tends to the same logits as alpha -> 0.
    tiny = WSoftmaxHead(4, alpha=1e-6)
    tiny.build(features.shape)
    tiny.kernel.assign(layer.kernel)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(tiny(features, labels, training=True)),
        inference,
        rtol=1e-5,
        atol=1e-5,
    )
    kernel = keras.ops.convert_to_numpy(layer.kernel)
    np.testing.assert_allclose(
        inference, features @ normalized(kernel), rtol=1e-5, atol=1e-5
    )
    # The gradients of plain softmax cross-entropy on normalised weights.
    dx, _ = layer_gradients(layer, features, labels)
    biased = WSoftmaxHead(4, alpha=1.0)
    biased.build(features.shape)
    biased.kernel.assign(kernel)
    dx_biased, _ = layer_gradients(biased, features, labels)
    assert not np.allclose(dx, dx_biased)  # alpha matters when > 0 ...
    np.testing.assert_allclose(  # ... and alpha = 0 is plain softmax
        dx,
        numeric_gradient(
            lambda x: cross_entropy(x @ normalized(kernel), labels), features
        ),
        rtol=1e-4,
        atol=1e-5,
    )


def test_no_labels_or_not_training_gives_plain_logits():
    features, labels = make_data(6, 5, 3, seed=7)
    layer = WSoftmaxHead(3, alpha=1.0)
    plain = keras.ops.convert_to_numpy(layer(features))
    for kwargs in (
        {"training": True},
        {"labels": labels},
        {"labels": labels, "training": False},
    ):
        np.testing.assert_array_equal(
            keras.ops.convert_to_numpy(layer(features, **kwargs)), plain
        )


def test_features_are_not_normalised():
    features, _ = make_data(3, 4, 3, seed=8)
    layer = WSoftmaxHead(3)
    small = keras.ops.convert_to_numpy(layer(features))
    large = keras.ops.convert_to_numpy(layer(10.0 * features))
    np.testing.assert_allclose(large, 10.0 * small, rtol=1e-5)


def test_kernel_scale_does_not_matter():
    features, labels = make_data(6, 4, 3, seed=9)
    layer = WSoftmaxHead(3)
    before = keras.ops.convert_to_numpy(
        layer(features, labels=labels, training=True)
    )
    layer.kernel.assign(layer.kernel * np.array([3.0, 0.1, 7.0], "float32"))
    after = keras.ops.convert_to_numpy(
        layer(features, labels=labels, training=True)
    )
    np.testing.assert_allclose(after, before, rtol=1e-5, atol=1e-6)


def test_all_negative_logits_are_a_label_independent_minimum():
    # A property of the formula (documented in the class docstring): when
    # every logit is -c, the true class wins for *any* label and the loss
    # goes to zero as c grows, while plain softmax stays at log(K).
    layer = WSoftmaxHead(3, alpha=1.0)
    layer.build((None, 3))
    layer.kernel.assign(
        np.array([[1.0, 0.2, 0.1], [0.1, 1.0, 0.3], [0.2, 0.1, 1.0]], "float32")
    )
    w = normalized(keras.ops.convert_to_numpy(layer.kernel))
    direction = np.linalg.solve(w.T, -np.ones(3))
    losses = []
    for c in (1.0, 10.0, 100.0):
        x = np.tile(c * direction, (3, 1)).astype("float32")
        labels = np.arange(3, dtype="int32")  # same x, every label
        logits = keras.ops.convert_to_numpy(
            layer(x, labels=labels, training=True)
        )
        np.testing.assert_allclose(
            logits, wsoftmax_reference(x, w, labels, 1.0), rtol=1e-4
        )
        plain = keras.ops.convert_to_numpy(layer(x))
        np.testing.assert_allclose(
            cross_entropy(plain, labels), np.log(3), rtol=1e-4
        )
        losses.append(cross_entropy(logits, labels))
    assert losses[0] > losses[1] > losses[2]
    assert losses[2] < 1e-6


# -- mixed precision -----------------------------------------------------------
def large_norm_batch(layer, num_classes, dim, norm):
    """Features of norm `norm` pointing at their own class weight."""
    rng = np.random.default_rng(10)
    layer.build((None, dim))
    w = normalized(keras.ops.convert_to_numpy(layer.kernel))
    labels = rng.integers(0, num_classes, size=8).astype("int32")
    direction = w[:, labels].T + 0.05 * rng.normal(size=(8, dim))
    direction /= np.linalg.norm(direction, axis=1, keepdims=True)
    features = (norm * direction).astype("float16")
    return features, labels


def test_float16_large_feature_norms_stay_finite():
    alpha, norm = 1.5, 4.0e4
    layer = WSoftmaxHead(6, alpha=alpha, dtype="mixed_float16")
    features, labels = large_norm_batch(layer, 6, 32, norm)
    kernel = keras.ops.convert_to_numpy(layer.kernel)
    assert keras.backend.standardize_dtype(layer.kernel.dtype) == "float32"
    # The paper's numerator z_j + α z_y overflows float16 here ...
    z = features.astype(np.float64) @ normalized(kernel)
    numerator = z + alpha * z[np.arange(8), labels][:, None]
    with np.errstate(over="ignore"):
        assert np.isinf(numerator.astype(np.float16)).any()
    # ... but the layer computes in float32, so its logits are finite.
    logits = layer(features, labels=labels, training=True)
    assert keras.backend.standardize_dtype(logits.dtype) == "float16"
    logits = keras.ops.convert_to_numpy(logits).astype(np.float64)
    assert np.all(np.isfinite(logits))
    expected = wsoftmax_reference(features, kernel, labels, alpha)
    np.testing.assert_allclose(logits, expected, rtol=2e-3, atol=2e-3 * norm)


def test_mixed_precision_training_step_is_finite():
    keras.config.set_dtype_policy("mixed_float16")
    features_in = keras.Input((16,))
    labels_in = keras.Input((), dtype="int32")
    hidden = keras.layers.Dense(16)(features_in)
    head = WSoftmaxHead(4, alpha=1.5)
    model = keras.Model(
        [features_in, labels_in], head(hidden, labels=labels_in)
    )
    model.compile(
        optimizer=keras.optimizers.SGD(1e-6),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=True,
    )
    features, labels = make_data(32, 16, 4, seed=11)
    history = model.fit(
        [3e3 * features, labels], labels, batch_size=16, epochs=2, verbose=0
    )
    assert np.all(np.isfinite(history.history["loss"]))
    assert all(
        np.all(np.isfinite(keras.ops.convert_to_numpy(w)))
        for w in model.weights
    )


# -- the two usages ----------------------------------------------------------
def build_models(num_classes=3, dim=4, alpha=1.0):
    inputs = keras.Input((6,), name="inputs")
    labels = keras.Input((), dtype="int32", name="labels")
    features = keras.layers.Dense(dim, name="features")(inputs)
    head = WSoftmaxHead(num_classes, alpha=alpha, name="head")
    train_model = keras.Model([inputs, labels], head(features, labels=labels))
    infer_model = keras.Model(inputs, head(features))
    return train_model, infer_model, head


def test_training_model_with_labels_and_inference_model_share_weights(
    tmp_path,
):
    train_model, infer_model, head = build_models()
    assert infer_model.get_layer("head") is head
    assert len(infer_model.weights) == len(train_model.weights) == 3
    rng = np.random.default_rng(12)
    labels = rng.integers(0, 3, size=48).astype("int32")
    centres = 3.0 * rng.normal(size=(3, 6))
    inputs = (centres[labels] + rng.normal(size=(48, 6))).astype("float32")
    train_model.compile(
        optimizer=keras.optimizers.Adam(0.05),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
        jit_compile=True,
    )
    before = infer_model.predict(inputs, verbose=0)
    history = train_model.fit(
        {"inputs": inputs, "labels": labels},
        labels,
        batch_size=16,
        epochs=15,
        verbose=0,
    )
    assert history.history["loss"][-1] < history.history["loss"][0]
    after = infer_model.predict(inputs, verbose=0)
    assert not np.allclose(after, before)  # trained through shared weights
    # Outside training the labels are ignored: both models give plain logits.
    np.testing.assert_allclose(
        train_model.predict([inputs, labels], verbose=0), after, atol=1e-5
    )
    assert np.mean(after.argmax(axis=1) == labels) > 0.9
    # The inference model saves and loads on its own, without labels.
    path = tmp_path / "infer.keras"
    infer_model.save(path)
    restored = keras.saving.load_model(path, safe_mode=True)
    np.testing.assert_allclose(
        restored.predict(inputs, verbose=0), after, rtol=1e-6
    )


def test_training_loss_is_the_w_softmax_loss():
    train_model, _, head = build_models(alpha=1.5)
    train_model.compile(
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    )
    inputs, labels = make_data(8, 6, 3, seed=13)
    features = keras.ops.convert_to_numpy(
        train_model.get_layer("features")(inputs)
    )
    kernel = keras.ops.convert_to_numpy(head.kernel)
    biased = wsoftmax_reference(features, kernel, labels, 1.5)
    plain = wsoftmax_reference(features, kernel)
    # `evaluate` runs in inference mode: the plain softmax loss.
    loss = train_model.evaluate([inputs, labels], labels, verbose=0)
    np.testing.assert_allclose(loss, cross_entropy(plain, labels), rtol=1e-5)
    # A training step sees the weights-biased logits.
    logits = train_model([inputs, labels], training=True)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(logits), biased, rtol=1e-5, atol=1e-5
    )


# -- the minimum feature width ------------------------------------------------
@pytest.mark.parametrize("num_classes", [2, 3, 10, 100])
def test_min_feature_dim_is_k_minus_one(num_classes):
    assert WSoftmaxHead.min_feature_dim(num_classes) == num_classes - 1
    assert WSoftmaxHead(num_classes).min_feature_dim(num_classes) == (
        num_classes - 1
    )


@pytest.mark.parametrize("num_classes", [3, 5, 10])
def test_equiangular_class_weights_need_k_minus_one_dims(num_classes):
    # K unit vectors at equal pairwise angles, as spread as possible (a
    # regular simplex, cosine -1/(K-1)), have a Gram matrix of rank K-1:
    # they fit in K-1 dimensions and in no fewer.
    k = num_classes
    gram = np.full((k, k), -1.0 / (k - 1)) + np.eye(k) * (1 + 1.0 / (k - 1))
    eigenvalues = np.linalg.eigvalsh(gram)
    assert eigenvalues.min() > -1e-12
    rank = int(np.sum(eigenvalues > 1e-9))
    assert rank == WSoftmaxHead.min_feature_dim(k)


def test_top_level_export():
    assert keras_dynfilt.WSoftmaxHead is WSoftmaxHead
    assert keras_dynfilt.layers.WSoftmaxHead is WSoftmaxHead


# -- errors ------------------------------------------------------------------
@pytest.mark.parametrize("num_classes", [1, 0, -3, 2.0, "10", None, True])
def test_bad_num_classes_raises(num_classes):
    with pytest.raises(ValueError, match=r"`num_classes` must be an integer"):
        WSoftmaxHead(num_classes)
    with pytest.raises(ValueError, match=r"num_classes="):
        WSoftmaxHead.min_feature_dim(num_classes)


@pytest.mark.parametrize(
    "alpha", [-0.5, float("nan"), float("inf"), "1", None, True]
)
def test_bad_alpha_raises(alpha):
    with pytest.raises(ValueError, match=r"`alpha` must be .*alpha="):
        WSoftmaxHead(4, alpha=alpha)


def test_float_labels_raise():
    features, labels = make_data(4, 3, 3)
    with pytest.raises(TypeError, match=r"`labels` must be integer.*float32"):
        WSoftmaxHead(3)(
            features, labels=labels.astype("float32"), training=True
        )


def test_float_label_input_raises_when_building_the_model():
    features = keras.Input((3,))
    labels = keras.Input((), dtype="float32")
    with pytest.raises(TypeError, match=r"`labels` must be integer"):
        WSoftmaxHead(3)(features, labels=labels)


@pytest.mark.parametrize("shape", [(4, 2), (4, 1, 1), ()])
def test_labels_of_wrong_rank_raise(shape):
    features = make_data(4, 3, 3)[0]
    labels = np.zeros(shape, "int32")
    with pytest.raises(ValueError, match=r"`labels` must have shape"):
        WSoftmaxHead(3)(features, labels=labels, training=True)


def test_label_input_of_wrong_rank_raises_when_building_the_model():
    with pytest.raises(ValueError, match=r"labels.shape=\(None, 3\)"):
        WSoftmaxHead(3)(
            keras.Input((3,)), labels=keras.Input((3,), dtype="int32")
        )


def test_labels_of_wrong_batch_size_raise():
    features = make_data(4, 3, 3)[0]
    with pytest.raises(ValueError, match=r"same batch size"):
        WSoftmaxHead(3)(features, labels=np.zeros(5, "int32"), training=True)


@pytest.mark.parametrize("bad", [3, 7, -1])
def test_labels_out_of_range_raise(bad):
    features = make_data(4, 3, 3)[0]
    labels = np.array([0, 1, bad, 2], "int32")
    with pytest.raises(ValueError, match=rf"\[0, 3\).*label of {bad}"):
        WSoftmaxHead(3)(features, labels=labels, training=True)


@pytest.mark.parametrize("shape", [(4,), (4, 3, 2)])
def test_features_of_wrong_rank_raise(shape):
    with pytest.raises(ValueError, match=r"features of rank 2"):
        WSoftmaxHead(3)(np.ones(shape, "float32"))


def test_unknown_feature_dim_raises():
    with pytest.raises(ValueError, match=r"last dimension .* must be defined"):
        WSoftmaxHead(3).build((None, None))
