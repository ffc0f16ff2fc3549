import keras
import numpy as np
import pytest

pytestmark = pytest.mark.tensorflow
tf = pytest.importorskip("tensorflow")

from keras_dynfilt.models import light_cnn  # noqa: E402
from keras_dynfilt.training import (  # noqa: E402
    ReplicaJitMixin,
    ReplicaJitModel,
    compile_replica_jit,
)
from tests.harness import mirrored_strategy  # noqa: E402


def _data(n=64):
    rng = np.random.default_rng(0)
    return rng.random((n, 8, 8, 1)).astype("float32"), np.arange(n) % 3


def _small_model():
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(4, 3)(inputs)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.Flatten()(x)
    outputs = keras.layers.Dense(3)(x)
    return keras.Model(inputs, outputs)


def _fit(strategy, jit_compile, weights=None, make=_small_model, epochs=3):
    x, y = _data()
    with strategy.scope():
        model = make()
        if weights is not None:
            model.set_weights(weights)
        compile_replica_jit(
            model,
            optimizer=keras.optimizers.SGD(0.1, momentum=0.9),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=["accuracy"],
            jit_compile=jit_compile,
        )
    initial = model.get_weights()
    history = model.fit(
        x, y, batch_size=16, epochs=epochs, shuffle=False, verbose=0
    )
    return model, initial, history.history


def test_keras_alone_fails_under_mirrored_xla():
    # The blocker this module works around (keras-team/keras#19005). If this
    # starts passing, Keras fixed it and compile_replica_jit can step aside.
    x, y = _data()
    with mirrored_strategy().scope():
        model = _small_model()
        model.compile("sgd", "mse", jit_compile=True)
    with pytest.raises(Exception, match=r"located in device|resource"):
        model.fit(x, np.eye(3)[y], batch_size=16, epochs=1, verbose=0)


def test_mirrored_xla_matches_mirrored_graph_mode():
    strategy = mirrored_strategy()
    _, initial, graph = _fit(strategy, jit_compile=False)
    model, _, xla = _fit(strategy, jit_compile=True, weights=initial)
    assert model._replica_jit and model.jit_compile is False
    for key in ("loss", "accuracy"):
        np.testing.assert_allclose(xla[key], graph[key], rtol=1e-5, atol=1e-6)


def test_per_replica_function_is_compiled_by_xla():
    model, _, _ = _fit(mirrored_strategy(), jit_compile=True, epochs=1)
    fn = model._replica_grad_fn
    assert fn.experimental_get_tracing_count() >= 1
    x, y = _data(8)
    strategy = mirrored_strategy()

    def replica_hlo():
        # Inside a replica, the variables resolve to that replica's copies.
        return fn.experimental_get_compiler_ir(
            tf.constant(x), tf.constant(y), None
        )(stage="hlo")

    hlos = strategy.experimental_local_results(strategy.run(replica_hlo))
    assert len(hlos) == 2
    for hlo in hlos:
        assert "HloModule" in hlo and "convolution" in hlo


class _HostOnly(keras.layers.Layer):
    """A layer XLA cannot compile (a host Python callback)."""

    def call(self, x):
        y = tf.numpy_function(lambda a: a, [x], tf.float32, stateful=False)
        return tf.ensure_shape(y, x.shape)


def _model_with_host_op():
    inputs = keras.Input((8, 8, 1))
    x = _HostOnly()(inputs)
    x = keras.layers.Flatten()(x)
    return keras.Model(inputs, keras.layers.Dense(3)(x))


def test_xla_really_runs_unsupported_op_is_rejected():
    # Graph mode accepts a host callback; the per-replica XLA step must not.
    _fit(
        mirrored_strategy(),
        jit_compile=False,
        make=_model_with_host_op,
        epochs=1,
    )
    with pytest.raises(Exception, match=r"(?i)xla|compil|PyFunc"):
        _fit(
            mirrored_strategy(),
            jit_compile=True,
            make=_model_with_host_op,
            epochs=1,
        )


def test_single_replica_uses_keras_jit_unchanged():
    model, _, history = _fit(tf.distribute.get_strategy(), True, epochs=1)
    assert model.jit_compile is True
    assert not getattr(model, "_replica_jit", False)
    assert "train_step" not in vars(model)
    assert np.isfinite(history["loss"]).all()


def test_custom_train_step_is_rejected_with_advice():
    class Custom(keras.Model):
        def train_step(self, data):
            return super().train_step(data)

    with mirrored_strategy().scope():
        inputs = keras.Input((3,))
        model = Custom(inputs, keras.layers.Dense(1)(inputs))
        with pytest.raises(TypeError, match=r"ReplicaJitMixin.*model="):
            compile_replica_jit(
                model, optimizer="sgd", loss="mse", jit_compile=True
            )


def test_mixin_with_custom_train_step():
    class Clipped(ReplicaJitMixin, keras.Model):
        def train_step(self, data):
            x, y = data
            loss, y_pred, grads = self.replica_jit_gradients(x, y)
            grads = [tf.clip_by_norm(g, 1.0) for g in grads]
            self.optimizer.apply_gradients(zip(grads, self.trainable_weights))
            self._loss_tracker.update_state(loss)
            return {"loss": self._loss_tracker.result()}

    x, y = _data()
    with mirrored_strategy().scope():
        base = _small_model()
        model = Clipped(base.inputs, base.outputs)
        model.compile(
            optimizer="sgd",
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            jit_compile=True,
        )
    history = model.fit(x, y, batch_size=16, epochs=2, verbose=0)
    assert model.replica_jit
    assert model._replica_grad_fn.experimental_get_tracing_count() >= 1
    assert history.history["loss"][1] < history.history["loss"][0]


def test_replica_jit_model_wrap_saves_and_loads(tmp_path):
    x, y = _data(16)
    with mirrored_strategy().scope():
        model = ReplicaJitModel.wrap(
            light_cnn((8, 8, 1), 3, width_multiplier=0.125)
        )
        model.compile(
            optimizer="adam",
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            jit_compile=True,
        )
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    assert model.replica_jit
    path = tmp_path / "m.keras"
    model.save(path)
    restored = keras.saving.load_model(path, safe_mode=True)
    assert isinstance(restored, ReplicaJitModel)
    # Compiled on load, with the jit_compile the user asked for.
    assert restored.compiled
    assert restored.get_compile_config()["jit_compile"] is True
    assert model.get_compile_config()["jit_compile"] is True
    np.testing.assert_allclose(
        restored.predict(x, verbose=0),
        model.predict(x, verbose=0),
        rtol=1e-5,
        atol=1e-6,
    )


def test_wrap_rejects_non_models():
    with pytest.raises(TypeError, match=r"`model` must be.*Received"):
        ReplicaJitModel.wrap("not a model")
