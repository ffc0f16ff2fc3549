import keras
import numpy as np
import pytest

import keras_dynfilt
from keras_dynfilt.layers import NDDR
from keras_dynfilt.optimizers import (
    LearningRateMultiplier,
    get_lr_multiplier,
    set_lr_multiplier,
)
from tests.harness import mirrored_strategy

LR = 0.01


def _np(x):
    return keras.ops.convert_to_numpy(x).astype("float64")


def _apply_fixed_gradients(optimizer, multiplier, steps=3):
    """Two equal variables, `tagged` carries `multiplier`; fixed gradients.

    Returns the displacement of each after `steps` applications. They start
    at zero, so a displacement is read without float32 cancellation.
    """
    init = np.zeros((4, 3), "float32")
    tagged, plain = keras.Variable(init), keras.Variable(init)
    set_lr_multiplier(tagged, multiplier)
    grads = [np.random.default_rng(s).normal(size=(4, 3)).astype("float32")
             for s in range(steps)]
    for g in grads:
        optimizer.apply([g, g], [tagged, plain])
    return _np(tagged) - init, _np(plain) - init


@pytest.mark.parametrize("momentum, nesterov", [(0.0, False), (0.9, False),
                                                (0.9, True)])
def test_sgd_moves_tagged_variables_multiplier_times_as_far(momentum,
                                                            nesterov):
    optimizer = LearningRateMultiplier(
        keras.optimizers.SGD(LR, momentum=momentum, nesterov=nesterov))
    tagged, plain = _apply_fixed_gradients(optimizer, 100.0)
    np.testing.assert_allclose(tagged, 100.0 * plain, rtol=1e-5, atol=1e-7)
    # ...and the untagged variable moves exactly as under the plain SGD.
    reference = keras.Variable(np.zeros((4, 3), "float32"))
    bare = keras.optimizers.SGD(LR, momentum=momentum, nesterov=nesterov)
    for s in range(3):
        g = np.random.default_rng(s).normal(size=(4, 3)).astype("float32")
        bare.apply([g], [reference])
    np.testing.assert_allclose(plain, _np(reference), rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("name", ["Adam", "Adamax", "Nadam", "RMSprop",
                                  "Adagrad", "Adadelta", "Lion", "Lamb"])
def test_any_optimizer_step_is_the_step_at_multiplier_times_lr(name):
    # Adaptive optimizers: with the same state, the step at lr * m is m
    # times the step at lr (gradient scaling would not do this).
    inner = getattr(keras.optimizers, name)(learning_rate=LR)
    # Lamb's trust ratio reads the weights, which differ after one step.
    tagged, plain = _apply_fixed_gradients(
        LearningRateMultiplier(inner), 7.0, steps=1 if name == "Lamb" else 2)
    np.testing.assert_allclose(tagged, 7.0 * plain, rtol=1e-4, atol=1e-8)


def test_decoupled_weight_decay_keeps_the_base_rate():
    optimizer = LearningRateMultiplier(
        keras.optimizers.SGD(LR, weight_decay=0.5))
    init = np.ones((2, 2), "float32")
    tagged, plain = keras.Variable(init), keras.Variable(init)
    set_lr_multiplier(tagged, 100.0)
    zero = np.zeros((2, 2), "float32")
    optimizer.apply([zero, zero], [tagged, plain])
    np.testing.assert_allclose(_np(tagged), 1 - LR * 0.5, rtol=1e-6)
    np.testing.assert_allclose(_np(plain), _np(tagged), rtol=0)


def _nddr_model(lr_multiplier, use_batch_norm=True):
    inputs = [keras.Input((4, 4, 3), name=f"task_{k}") for k in range(2)]
    x = [keras.layers.Conv2D(3, 3, padding="same", name=f"conv_{k}")(i)
         for k, i in enumerate(inputs)]
    y = NDDR(lr_multiplier=lr_multiplier, use_batch_norm=use_batch_norm,
             batch_norm_synchronized=True, name="nddr")(x)
    outs = [keras.layers.Dense(1, name=f"head_{k}")(
        keras.layers.GlobalAveragePooling2D()(t)) for k, t in enumerate(y)]
    return keras.Model(inputs, outs)


def _data(n=8):
    rng = np.random.default_rng(1)
    xs = [rng.normal(size=(n, 4, 4, 3)).astype("float32") for _ in range(2)]
    ys = [rng.normal(size=(n, 1)).astype("float32") for _ in range(2)]
    return xs, ys


def _one_step(model, optimizer, weights, batch_size=8, steps=1):
    model.set_weights(weights)
    model.compile(optimizer=optimizer, loss=["mse", "mse"])
    xs, ys = _data(batch_size * steps)
    model.fit(xs, ys, batch_size=batch_size, epochs=1, shuffle=False,
              verbose=0)
    return {v.path: _np(v) for v in model.trainable_variables}


@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_fit_step_moves_nddr_variables_multiplier_times_as_far(momentum):
    model = _nddr_model(lr_multiplier=100.0)
    weights = model.get_weights()
    start = {v.path: _np(v) for v in model.trainable_variables}
    scaled = _one_step(model, LearningRateMultiplier(
        keras.optimizers.SGD(LR, momentum=momentum)), weights)
    base = _one_step(_nddr_model(lr_multiplier=100.0),
                     keras.optimizers.SGD(LR, momentum=momentum), weights)
    nddr_paths = [p for p in start if p.startswith("nddr/")]
    assert len(nddr_paths) == 4
    eps = np.finfo("float32").eps
    for path in start:
        factor = 100.0 if path in nddr_paths else 1.0
        # A displacement read off a float32 variable of size |w| is exact to
        # about eps * |w|; the base one is multiplied by `factor`.
        resolution = 4 * eps * max(1.0, np.abs(start[path]).max())
        np.testing.assert_allclose(
            scaled[path] - start[path], factor * (base[path] - start[path]),
            rtol=1e-4, atol=factor * resolution, err_msg=path)
        if path in nddr_paths:
            assert np.abs(base[path] - start[path]).max() > 1e3 * resolution


@pytest.mark.tensorflow
def test_mirrored_strategy_matches_one_device():
    def train(strategy, weights):
        with strategy.scope():
            model = _nddr_model(lr_multiplier=100.0)
            optimizer = LearningRateMultiplier(
                keras.optimizers.SGD(LR, momentum=0.9))
        return _one_step(model, optimizer, weights, batch_size=8, steps=2)

    import tensorflow as tf

    weights = _nddr_model(lr_multiplier=100.0).get_weights()
    single = train(tf.distribute.get_strategy(), weights)
    mirrored = train(mirrored_strategy(), weights)
    for path, value in single.items():
        np.testing.assert_allclose(mirrored[path], value, rtol=1e-4,
                                   atol=1e-6, err_msg=path)


def test_patterns_take_precedence_over_tags():
    model = _nddr_model(lr_multiplier=100.0)
    optimizer = LearningRateMultiplier(
        "sgd", multipliers={r"^nddr/batch_norm": 3.0, "conv_1": 2.0})
    found = {v.path: optimizer.multiplier_for(v)
             for v in model.trainable_variables}
    assert found["nddr/batch_norm/gamma"] == 3.0
    assert found["nddr/kernel_0"] == 100.0
    assert found["conv_1/kernel"] == 2.0
    assert found["conv_0/kernel"] == 1.0


def test_mixed_precision_fit_step():
    keras.config.set_dtype_policy("mixed_float16")
    model = _nddr_model(lr_multiplier=100.0)
    model.compile(optimizer=LearningRateMultiplier(keras.optimizers.SGD(LR)),
                  loss=["mse", "mse"])
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    xs, ys = _data()
    history = model.fit(xs, ys, batch_size=8, epochs=2, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))


def test_config_round_trip_and_model_save(tmp_path):
    optimizer = LearningRateMultiplier(
        keras.optimizers.SGD(LR, momentum=0.9), multipliers={"nddr": 100.0})
    clone = LearningRateMultiplier.from_config(optimizer.get_config())
    assert clone.multipliers == {"nddr": 100.0}
    assert clone.inner_optimizer.get_config() == (
        optimizer.inner_optimizer.get_config())
    model = _nddr_model(lr_multiplier=100.0)
    model.compile(optimizer=optimizer, loss=["mse", "mse"])
    xs, ys = _data()
    model.fit(xs, ys, batch_size=8, epochs=1, verbose=0)
    model.save(tmp_path / "m.keras")
    restored = keras.saving.load_model(tmp_path / "m.keras", safe_mode=True)
    assert isinstance(restored.optimizer, LearningRateMultiplier)
    assert restored.optimizer.multipliers == {"nddr": 100.0}
    assert int(restored.optimizer.iterations) == 1
    for a, b in zip(model.optimizer.variables, restored.optimizer.variables):
        np.testing.assert_allclose(_np(a), _np(b))


def test_learning_rate_is_the_inner_one():
    optimizer = LearningRateMultiplier(keras.optimizers.SGD(0.5))
    np.testing.assert_allclose(_np(optimizer.learning_rate), 0.5)
    optimizer.learning_rate = 0.25
    np.testing.assert_allclose(
        _np(optimizer.inner_optimizer.learning_rate), 0.25)


def test_set_lr_multiplier_on_layers():
    layer = keras.layers.Dense(2)
    with pytest.raises(ValueError, match=r"needs a built layer"):
        set_lr_multiplier(layer, 10.0)
    layer.build((None, 3))
    assert len(set_lr_multiplier(layer, 10.0)) == 2
    assert get_lr_multiplier(layer.kernel) == 10.0
    assert keras_dynfilt.optimizers.LearningRateMultiplier is (
        LearningRateMultiplier)


@pytest.mark.parametrize("kwargs, error, match", [
    ({"inner_optimizer": "ftrl"}, ValueError, r"cannot be Ftrl"),
    ({"inner_optimizer": keras.optimizers.LossScaleOptimizer(
        keras.optimizers.SGD())}, ValueError, r"inside `LossScaleOptimizer`"),
    ({"inner_optimizer": "sgd", "multipliers": {"nddr": -1.0}}, ValueError,
     r"`multipliers\['nddr'\]` must be a finite, non-negative"),
    ({"inner_optimizer": "sgd", "multipliers": {"(": 2.0}}, ValueError,
     r"valid regular expressions"),
    ({"inner_optimizer": "sgd", "multipliers": {3: 2.0}}, ValueError,
     r"must be regular expressions \(strings\)"),
    ({"inner_optimizer": "sgd", "clipnorm": 1.0}, ValueError,
     r"set them on `inner_optimizer`"),
])
def test_bad_arguments_raise(kwargs, error, match):
    with pytest.raises(error, match=match):
        LearningRateMultiplier(**kwargs)


def test_set_lr_multiplier_bad_arguments():
    with pytest.raises(ValueError, match=r"`multiplier` must be a finite"):
        set_lr_multiplier(keras.Variable(1.0), float("nan"))
    with pytest.raises(TypeError, match=r"`target` must be a keras.Variable"):
        set_lr_multiplier("kernel", 2.0)
