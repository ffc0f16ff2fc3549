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


def loss_gradients(model, x, y):
    """`d loss / d v` for every trainable variable of `model`, as NumPy.

    The loss is the compiled one (`model.compute_loss`, regularization
    included), with the model in inference mode. Returns a list in the
    order of `model.trainable_variables`.
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

        def loss_of(values):
            # Compute the loss with `values` in place of the variables;
            # the scope discards every state update (metrics, BN).
            mapping = list(zip(variables, values))
            with keras.StatelessScope(state_mapping=mapping):
                return _loss(model, x, y)

        grads = jax.grad(loss_of)([v.value for v in variables])
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
    return [
        np.zeros(v.shape, "float64")
        if g is None
        else np.asarray(keras.ops.convert_to_numpy(g), "float64")
        for v, g in zip(variables, grads)
    ]
