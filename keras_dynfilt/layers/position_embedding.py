import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_dynfilt")
class PositionEmbedding(keras.layers.Layer):
    """Adds a learned vector to each position of a sequence of tokens.

    The position embedding of a Vision Transformer: one trainable vector of
    the sequence's width per position, added to the tokens. Written as a
    layer of this library so that ViTs built from public Keras layers save
    with `safe_mode=True` and so that the pruning engine can follow the
    channel axis through it (channel `c` of the output is channel `c` of
    the input plus entry `c` of each position's vector).

    Args:
        initializer: Initializer of the embedding (default: truncated
            normal with standard deviation 0.02, as in ViT).
        **kwargs: Base layer keyword arguments, such as `name` and `dtype`.

    Input shape:
        3-D tensor `(batch_size, sequence_length, channels)` with a fixed
        `sequence_length`.

    Output shape:
        Same as the input.

    Examples:
        >>> x = keras.ops.ones((2, 17, 8))
        >>> keras.ops.shape(keras_dynfilt.layers.PositionEmbedding()(x))
        (2, 17, 8)
    """

    def __init__(self, initializer=None, **kwargs):
        super().__init__(**kwargs)
        if initializer is None:
            initializer = keras.initializers.TruncatedNormal(stddev=0.02)
        self.initializer = keras.initializers.get(initializer)

    def build(self, input_shape):
        if (
            len(input_shape) != 3
            or input_shape[1] is None
            or input_shape[2] is None
        ):
            raise ValueError(
                "PositionEmbedding expects an input of shape (batch_size, "
                "sequence_length, channels) with a known sequence length "
                f"and channel count. Received: input_shape="
                f"{tuple(input_shape)}"
            )
        self.embedding = self.add_weight(
            name="embedding",
            shape=(input_shape[1], input_shape[2]),
            initializer=self.initializer,
        )
        self.input_spec = keras.layers.InputSpec(
            ndim=3, axes={1: input_shape[1], -1: input_shape[-1]}
        )

    def call(self, inputs):
        return inputs + ops.cast(self.embedding, inputs.dtype)[None]

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        return {
            **super().get_config(),
            "initializer": keras.initializers.serialize(self.initializer),
        }
