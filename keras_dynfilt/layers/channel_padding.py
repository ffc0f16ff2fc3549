import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_dynfilt")
class ChannelPadding(keras.layers.Layer):
    """Pads the channel (last) axis with zero channels.

    The parameter-free shortcut of CIFAR ResNets ("option A"): after a
    strided subsampling, the residual stream is widened by appending zero
    channels instead of a 1x1 projection. Written as a layer (rather than a
    `Lambda`) so that models containing it save and load with
    `safe_mode=True`, and so that the pruning engine knows that the padded
    channels are constant zeros (they may be removed together with the
    filters they are added to).

    Reference:
        - [He et al., Deep Residual Learning for Image
          Recognition](https://arxiv.org/abs/1512.03385), option A shortcuts.

    Args:
        padding: Tuple of two non-negative integers `(before, after)`: the
            number of zero channels put before and after the input channels.
            An integer `p` means `(p, p)`.
        **kwargs: Base layer keyword arguments, such as `name` and `dtype`.

    Input shape:
        N-D tensor with rank >= 2, `(batch_size, ..., channels)`.

    Output shape:
        `(batch_size, ..., before + channels + after)`.

    Examples:
        >>> x = keras.ops.ones((2, 8, 8, 16))
        >>> keras.ops.shape(keras_dynfilt.layers.ChannelPadding((0, 16))(x))
        (2, 8, 8, 32)
    """

    def __init__(self, padding=(0, 0), **kwargs):
        super().__init__(**kwargs)
        if isinstance(padding, int) and not isinstance(padding, bool):
            padding = (padding, padding)
        if (
            not isinstance(padding, (tuple, list))
            or len(padding) != 2
            or any(
                isinstance(p, bool) or not isinstance(p, int) or p < 0
                # Beyond int32 no tensor can hold the padded channels.
                or p > 2**31 - 1
                for p in padding
            )
        ):
            raise ValueError(
                "`padding` must be a non-negative integer or a tuple of two "
                f"non-negative integers (before, after). Received: "
                f"padding={padding!r}"
            )
        self.padding = tuple(padding)
        self.supports_masking = True

    def build(self, input_shape):
        if len(input_shape) < 2:
            raise ValueError(
                "ChannelPadding expects an input of rank >= 2. "
                f"Received: input_shape={tuple(input_shape)}"
            )
        # Later calls must match what the layer was built for.
        self.input_spec = keras.layers.InputSpec(
            ndim=len(input_shape), axes={-1: input_shape[-1]}
        )

    def call(self, inputs):
        rank = len(inputs.shape)
        pad = [[0, 0]] * (rank - 1) + [list(self.padding)]
        return ops.pad(inputs, pad)

    def compute_output_shape(self, input_shape):
        output_shape = list(input_shape)
        if output_shape[-1] is not None:
            output_shape[-1] += sum(self.padding)
        return tuple(output_shape)

    def compute_mask(self, inputs, mask=None):
        return mask

    def get_config(self):
        return {**super().get_config(), "padding": self.padding}
