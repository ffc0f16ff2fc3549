import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_dynfilt")
class MFM(keras.layers.Layer):
    """Max-Feature-Map 2/1 activation from LightCNN.

    Splits the channel axis into two halves and returns their elementwise
    maximum, halving the number of channels: output channel `c` is
    `max(h_c, h_{c + N/2})` for an input with `N` (even) channels. This is the
    same half-split order as LightCNN's `mfm` module, so ported weights keep
    their meaning. When a network is pruned, output channel `k` couples the
    producer's filters `k` and `k + N/2`: they are removed together.

    Reference:
        - [Wu et al., A Light CNN for Deep Face Representation with Noisy
          Labels](https://arxiv.org/abs/1511.02683)

    Args:
        axis: Integer, the channel axis to split. Defaults to `-1`
            (channels last).
        **kwargs: Base layer keyword arguments, such as `name` and `dtype`.

    Input shape:
        N-D tensor with rank >= 2 whose size along `axis` is even, e.g.
        `(batch_size, height, width, 2 * C)` or `(batch_size, 2 * C)`.

    Output shape:
        Same as the input with the size along `axis` halved.

    Examples:
        >>> x = keras.ops.ones((2, 8, 8, 32))
        >>> keras.ops.shape(keras_dynfilt.layers.MFM()(x))
        (2, 8, 8, 16)
    """

    def __init__(self, axis=-1, **kwargs):
        super().__init__(**kwargs)
        if isinstance(axis, bool) or not isinstance(axis, int):
            raise ValueError(
                "`axis` must be an integer. "
                f"Received: axis={axis!r} of type {type(axis).__name__}"
            )
        if axis == 0:
            raise ValueError(
                "`axis` cannot be the batch axis. Received: axis=0"
            )
        self.axis = axis
        self.supports_masking = True

    def _channel_axis(self, input_shape):
        rank = len(input_shape)
        if rank < 2:
            raise ValueError(
                "MFM expects an input of rank >= 2. "
                f"Received: input_shape={tuple(input_shape)}"
            )
        if not -rank <= self.axis < rank:
            raise ValueError(
                f"`axis` is out of range for an input of rank {rank}. "
                f"Received: axis={self.axis}, "
                f"input_shape={tuple(input_shape)}"
            )
        axis = self.axis % rank
        if axis == 0:
            raise ValueError(
                "`axis` cannot be the batch axis. "
                f"Received: axis={self.axis}, "
                f"input_shape={tuple(input_shape)}"
            )
        return axis

    def build(self, input_shape):
        axis = self._channel_axis(input_shape)
        channels = input_shape[axis]
        if channels is None:
            raise ValueError(
                "The channel axis of the MFM input must be defined. "
                f"Received: axis={self.axis}, "
                f"input_shape={tuple(input_shape)}"
            )
        if channels % 2:
            raise ValueError(
                "MFM needs an even number of channels along `axis` (it takes "
                "the maximum of the two halves). "
                f"Received: {channels} channels, axis={self.axis}, "
                f"input_shape={tuple(input_shape)}"
            )
        # Later calls must match what the layer was built for.
        self.input_spec = keras.layers.InputSpec(
            ndim=len(input_shape), axes={self.axis: channels}
        )

    def call(self, inputs):
        first, second = ops.split(inputs, 2, axis=self.axis)
        return ops.maximum(first, second)

    def compute_output_shape(self, input_shape):
        axis = self._channel_axis(input_shape)
        output_shape = list(input_shape)
        if output_shape[axis] is not None:
            output_shape[axis] //= 2
        return tuple(output_shape)

    def compute_mask(self, inputs, mask=None):
        return mask

    def get_config(self):
        return {**super().get_config(), "axis": self.axis}
