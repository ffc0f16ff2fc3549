"""The private Keras symbols keras-dynfilt uses, in one place.

Keras has no public name for these. Each has a fallback built on public
API, so a Keras release that moves them degrades to the fallback instead of
breaking `import keras_dynfilt`.
"""

import keras

try:  # The class of functional models (graph analysis in pruning).
    from keras.src.models.functional import Functional
except ImportError:  # pragma: no cover - exercised only on a moved Keras
    _input = keras.Input((1,))
    Functional = type(keras.Model(_input, keras.layers.Identity()(_input)))
    del _input


def unscale_loss_for_distribution(value):
    """Undoes Keras's division of the loss by the number of replicas.

    `Model.compute_loss` scales the loss by `1 / num_replicas_in_sync` under
    a TensorFlow strategy so that summed gradients are means; the value
    reported in the logs is unscaled again. (The same few lines as
    `keras.src.losses.loss.unscale_loss_for_distribution`, which has no
    public name.)
    """
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        if replicas > 1:
            value = keras.ops.multiply(
                value, keras.ops.cast(replicas, value.dtype)
            )
    return value
