import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_dynfilt")
class ClassToken(keras.layers.Layer):
    """Prepends a learned token to a sequence of tokens.

    The `[CLS]` token of a Vision Transformer: a trainable vector of the
    sequence's width, put in front of the patch tokens, whose final state is
    read by the classifier. Written as a layer of this library so that ViTs
    built from public Keras layers save with `safe_mode=True` and so that
    the pruning engine can follow the channel axis through it (channel `c`
    of the output is channel `c` of the input and of the token).

    Args:
        **kwargs: Base layer keyword arguments, such as `name` and `dtype`.

    Input shape:
        3-D tensor `(batch_size, sequence_length, channels)`.

    Output shape:
        `(batch_size, sequence_length + 1, channels)`.

    Examples:
        >>> x = keras.ops.ones((2, 16, 8))
        >>> keras.ops.shape(keras_dynfilt.layers.ClassToken()(x))
        (2, 17, 8)
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)

    def build(self, input_shape):
        if len(input_shape) != 3 or input_shape[-1] is None:
            raise ValueError(
                "ClassToken expects an input of shape (batch_size, "
                "sequence_length, channels) with a known channel count. "
                f"Received: input_shape={tuple(input_shape)}"
            )
        self.token = self.add_weight(
            name="token",
            shape=(1, 1, input_shape[-1]),
            initializer="zeros",
        )
        self.input_spec = keras.layers.InputSpec(
            ndim=3, axes={-1: input_shape[-1]}
        )

    def call(self, inputs):
        batch = ops.shape(inputs)[0]
        token = ops.cast(self.token, inputs.dtype)
        token = ops.broadcast_to(token, (batch, 1, ops.shape(inputs)[-1]))
        return ops.concatenate([token, inputs], axis=1)

    def compute_output_shape(self, input_shape):
        length = input_shape[1]
        return (
            input_shape[0],
            None if length is None else length + 1,
            input_shape[2],
        )
