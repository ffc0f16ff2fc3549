"""Gradients of a compiled model's loss, on every backend.

Keras has no public "gradient of the loss" call: each trainer writes its
own (`tf.GradientTape`, `jax.value_and_grad` over `stateless_call`,
`loss.backward()`). The importance criteria need one, so the backend
dispatch lives here and nowhere else.
"""

import keras
import numpy as np


def _loss(model, x, y):
    y_pred = model(x, training=False)
    return model.compute_loss(x=x, y=y, y_pred=y_pred, training=False)


def _to_numpy(variables, grads):
    return [
        np.zeros(v.shape, "float64")
        if g is None
        else np.asarray(keras.ops.convert_to_numpy(g), "float64")
        for v, g in zip(variables, grads)
    ]


def loss_gradients(model, x, y):
    """`d loss / d v` for every trainable variable of `model`, as NumPy.

    The loss is the compiled one (`model.compute_loss`, regularization
    included), with the model in inference mode. Returns a list in the
    order of `model.trainable_variables`. Eager; `gradient_function`
    compiles it for many batches.
    """
    variables = model.trainable_variables
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        with tf.GradientTape() as tape:
            loss = _loss(model, x, y)
        grads = tape.gradient(loss, variables)
    elif backend == "jax":
        import jax

        grads = jax.grad(_jax_loss(model))(
            [v.value for v in variables], x, y
        )
    elif backend == "torch":
        for v in variables:
            v.value.grad = None
        _loss(model, x, y).backward()
        grads = [v.value.grad for v in variables]
    else:
        raise NotImplementedError(
            "Gradient-based criteria support the TensorFlow, JAX and torch "
            f"backends. Received: backend={backend!r}"
        )
    return _to_numpy(variables, grads)


def _jax_loss(model):
    variables = model.trainable_variables

    def loss_of(values, x, y):
        # Compute the loss with `values` in place of the variables; the
        # scope discards every state update (metrics, BN).
        mapping = list(zip(variables, values))
        with keras.StatelessScope(state_mapping=mapping):
            return _loss(model, x, y)

    return loss_of


def gradient_function(model):
    """`loss_gradients` for many batches, compiled once.

    On TensorFlow a `tf.function` and on JAX a `jax.jit` of the same
    gradient (traced once, then about twice as fast per batch on CPU as
    eager; the gradients are the same), as `fit` compiles its train step:
    eager where the model asks for it (`run_eagerly`) and on torch. When
    the compiled function fails on the first batch (a layer that only
    runs eagerly) the eager one takes over, which raises if the error is
    real.
    """
    backend = keras.backend.backend()
    if getattr(model, "run_eagerly", False) or backend not in (
        "tensorflow", "jax"
    ):
        return lambda x, y: loss_gradients(model, x, y)
    variables = model.trainable_variables
    if backend == "tensorflow":
        import tensorflow as tf

        @tf.function(reduce_retracing=True)
        def compiled(x, y):
            with tf.GradientTape() as tape:
                loss = _loss(model, x, y)
            return tape.gradient(loss, variables)

        def call(x, y):
            return compiled(x, y)
    else:
        import jax

        compiled = jax.jit(jax.grad(_jax_loss(model)))

        def call(x, y):
            return compiled([v.value for v in variables], x, y)

    state = {"compiled": True}

    def gradients(x, y):
        if state["compiled"]:
            try:
                return _to_numpy(variables, call(x, y))
            except Exception:  # noqa: BLE001 - eager decides (see above)
                state["compiled"] = False
        return loss_gradients(model, x, y)

    return gradients
