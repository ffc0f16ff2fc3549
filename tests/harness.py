"""The layer conformance harness every layer test uses.

This is the only module that imports Keras's private test harness
(`keras.src.testing`), so a change in Keras is fixed in one place.

A layer test subclasses `LayerConformance`, sets `layer_cls`,
`init_kwargs` and, where needed, `call_kwargs`, and implements
`make_inputs()` (the positional input: an array or a list of arrays) and
optionally `make_tensor_kwargs()` (tensor call arguments such as
`labels=`). It then inherits:

1. `test_keras_layer_test`: Keras's own `run_layer_test` (config round trip,
   build, symbolic and eager calls, a training step, mixed_float16);
2. `test_config_has_every_init_argument`;
3. `test_keras_save_load_safe_mode`: `.keras` round trip with
   `safe_mode=True` gives identical outputs;
4. `test_fit_with_jit_compile`: a tiny model containing the layer trains
   with `jit_compile=True` (XLA on TensorFlow, `jax.jit` on JAX);
5. `test_mirrored_strategy_same_loss` (TensorFlow only): the same tiny model
   fitted under `tf.distribute.MirroredStrategy` over two logical CPUs gives
   the same losses as on one device.
"""

import functools
import inspect

import keras
import numpy as np
import pytest
from keras.src.testing import TestCase as _KerasTestCase

MIRRORED_DEVICES = ("/cpu:0", "/cpu:1")


@functools.lru_cache(maxsize=None)
def mirrored_strategy():
    """One `MirroredStrategy` over the two logical CPUs for the whole run.

    It reduces through one device (see
    `keras_dynfilt.training.cpu_mirrored_strategy`) so that the
    other strategies that tests and example scripts create in the same
    process cannot collide with it.
    """
    from keras_dynfilt.training import cpu_mirrored_strategy

    return cpu_mirrored_strategy(MIRRORED_DEVICES)


def keras_test_case():
    """A ready-to-use instance of Keras's `TestCase` (for its asserts)."""
    case = _KerasTestCase(methodName="run_layer_test")
    case.setUp()
    return case


def _as_list(x):
    return list(x) if isinstance(x, (list, tuple)) else [x]


def _flatten_outputs(outputs):
    flat = []
    for i, y in enumerate(keras.tree.flatten(outputs)):
        if len(y.shape) > 2:
            y = keras.layers.Flatten(name=f"harness_flatten_{i}")(y)
        elif len(y.shape) == 1:
            y = keras.layers.Reshape((1,), name=f"harness_reshape_{i}")(y)
        flat.append(y)
    if len(flat) == 1:
        return flat[0]
    return keras.layers.Concatenate(name="harness_concat")(flat)


class LayerConformance:
    """Mixin of conformance tests; see the module docstring."""

    layer_cls = None
    init_kwargs = {}
    call_kwargs = {}
    expected_output_shape = None
    run_mixed_precision_check = True
    run_keras_training_check = True
    # Losses under MirroredStrategy match one device to this tolerance.
    mirrored_rtol = 1e-5
    mirrored_atol = 1e-6
    fit_batch_size = 8
    fit_steps = 3

    # -- hooks ------------------------------------------------------------
    def make_inputs(self):
        raise NotImplementedError

    def make_tensor_kwargs(self):
        return {}

    def make_layer(self):
        return self.layer_cls(**self.init_kwargs)

    # -- helpers ----------------------------------------------------------
    def _inputs_and_kwargs(self):
        inputs = self.make_inputs()
        return inputs, self.make_tensor_kwargs()

    def build_model(self, inputs, tensor_kwargs, head=True):
        """A functional model: Inputs -> layer -> (flatten, Dense(1))."""
        positional = [
            keras.Input(shape=a.shape[1:], dtype=str(a.dtype), name=f"in_{i}")
            for i, a in enumerate(_as_list(inputs))
        ]
        named = {
            k: keras.Input(shape=v.shape[1:], dtype=str(v.dtype), name=k)
            for k, v in tensor_kwargs.items()
        }
        x = positional if isinstance(inputs, (list, tuple)) else positional[0]
        layer = self.make_layer()
        outputs = layer(x, **self.call_kwargs, **named)
        if head:
            outputs = keras.layers.Dense(1, name="harness_head")(
                _flatten_outputs(outputs)
            )
        return keras.Model(positional + list(named.values()), outputs)

    def _model_data(self, inputs, tensor_kwargs):
        return _as_list(inputs) + list(tensor_kwargs.values())

    # -- the tests --------------------------------------------------------
    def test_keras_layer_test(self):
        inputs, tensor_kwargs = self._inputs_and_kwargs()
        if isinstance(inputs, list):
            # Keras's training check feeds the inputs through a generator
            # that `tf.data` only accepts as a tuple, not a list.
            inputs = tuple(inputs)
        keras_test_case().run_layer_test(
            self.layer_cls,
            init_kwargs=self.init_kwargs,
            input_data=inputs,
            call_kwargs={**self.call_kwargs, **tensor_kwargs},
            expected_output_shape=self.expected_output_shape,
            # Keras's training step calls the layer without call kwargs;
            # test_fit_with_jit_compile covers training for such layers.
            run_training_check=(
                self.run_keras_training_check and not tensor_kwargs
            ),
            run_mixed_precision_check=self.run_mixed_precision_check,
        )

    def test_config_has_every_init_argument(self):
        config = self.make_layer().get_config()
        params = inspect.signature(self.layer_cls.__init__).parameters
        missing = [
            name
            for name, p in params.items()
            if name != "self"
            and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)
            and name not in config
        ]
        assert not missing, (
            f"{self.layer_cls.__name__}.get_config() lacks constructor "
            f"arguments {missing}"
        )

    def test_keras_save_load_safe_mode(self, tmp_path):
        inputs, tensor_kwargs = self._inputs_and_kwargs()
        model = self.build_model(inputs, tensor_kwargs, head=False)
        data = self._model_data(inputs, tensor_kwargs)
        expected = model.predict(data, verbose=0)
        path = tmp_path / "model.keras"
        model.save(path)
        restored = keras.saving.load_model(path, safe_mode=True)
        found = restored.predict(data, verbose=0)
        for e, f in zip(
            keras.tree.flatten(expected), keras.tree.flatten(found)
        ):
            np.testing.assert_allclose(f, e, rtol=1e-6, atol=1e-6)
        layer_types = {type(layer) for layer in restored.layers}
        assert self.layer_cls in layer_types

    def test_fit_with_jit_compile(self):
        inputs, tensor_kwargs = self._inputs_and_kwargs()
        model = self.build_model(inputs, tensor_kwargs)
        data = self._model_data(inputs, tensor_kwargs)
        batch = len(data[0])
        targets = np.random.default_rng(0).normal(size=(batch, 1))
        model.compile(
            optimizer=keras.optimizers.SGD(0.01), loss="mse", jit_compile=True
        )
        before = [
            keras.ops.convert_to_numpy(w) for w in model.trainable_weights
        ]
        history = model.fit(
            data, targets, batch_size=batch, epochs=2, shuffle=False, verbose=0
        )
        assert np.all(np.isfinite(history.history["loss"]))
        after = [keras.ops.convert_to_numpy(w) for w in model.trainable_weights]
        moved = {
            id(w): not np.allclose(b, a)
            for w, b, a in zip(model.trainable_weights, before, after)
        }
        (layer,) = [
            lay for lay in model.layers if isinstance(lay, self.layer_cls)
        ]
        # Every trainable weight of the layer gets a gradient; a layer
        # without weights must really have none, and the head behind it
        # (the only thing that trains then) moves.
        still = [w.path for w in layer.trainable_weights if not moved[id(w)]]
        assert not still, f"these weights of the layer never moved: {still}"
        if not layer.trainable_weights:
            assert not layer.weights, f"untrainable weights: {layer.weights}"
            assert all(moved.values()), "the head behind the layer never moved"

    @pytest.mark.tensorflow
    def test_mirrored_strategy_same_loss(self):
        import tensorflow as tf

        inputs, tensor_kwargs = self._inputs_and_kwargs()
        data = self._model_data(inputs, tensor_kwargs)
        n = self.fit_batch_size * self.fit_steps
        data = [np.concatenate([d] * (n // len(d) + 1))[:n] for d in data]
        targets = np.random.default_rng(0).normal(size=(n, 1))

        def fit(strategy, weights=None):
            with strategy.scope():
                model = self.build_model(inputs, tensor_kwargs)
                if weights is not None:
                    model.set_weights(weights)
                model.compile(optimizer=keras.optimizers.SGD(0.01), loss="mse")
            initial = model.get_weights()
            history = model.fit(
                data,
                targets,
                batch_size=self.fit_batch_size,
                epochs=2,
                shuffle=False,
                verbose=0,
            )
            return initial, history.history["loss"]

        initial, single = fit(tf.distribute.get_strategy())
        mirrored = mirrored_strategy()
        assert mirrored.num_replicas_in_sync == 2
        _, distributed = fit(mirrored, initial)
        np.testing.assert_allclose(
            distributed,
            single,
            rtol=self.mirrored_rtol,
            atol=self.mirrored_atol,
        )
