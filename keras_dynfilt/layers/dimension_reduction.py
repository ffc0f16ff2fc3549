import keras
from keras import ops

from keras_dynfilt._validation import (
    check_float,
    check_float_inputs,
    check_int,
    check_positive_int,
    get_initializer,
    get_regularizer,
)


def _axis_schedule(size):
    """(kernel, stride) of the strided stages for one axis, then the last
    kernel, which covers what is left (stride 1, no padding) to reach 1."""
    stages = []
    while size > 4:
        stride = 4 if size % 4 == 0 else 2 if size % 2 == 0 else 3
        stages.append(stride)
        size = -(-size // stride)
    return stages, size


def reduction_schedule(height, width):
    """The strided stages and the final kernel for a `height x width` map.

    Each axis is divided by 4 while it is a multiple of 4, else by 2 while
    even, else by 3 (rounding up, `"same"` padding), until at most 4 is left;
    a last convolution whose kernel covers the rest gives 1x1. This gives the
    shapes of the paper's tables 6-7 and 10-20 (28 -> 7 -> 3 -> 1,
    14 -> 7 -> 3 -> 1, 64 -> 16 -> 4 -> 1, 32 -> 8 -> 2 -> 1, ...). When the
    two axes need a different number of stages, the shorter one is padded
    with stride 1.

    Returns:
        `(strides, final_kernel)`: a list of `(stride_h, stride_w)` (each
        stage's kernel equals its stride) and the `(kh, kw)` of the last
        convolution.
    """
    rows, last_h = _axis_schedule(height)
    cols, last_w = _axis_schedule(width)
    depth = max(len(rows), len(cols))
    rows += [1] * (depth - len(rows))
    cols += [1] * (depth - len(cols))
    return list(zip(rows, cols)), (last_h, last_w)


@keras.saving.register_keras_serializable(package="keras_dynfilt")
class DimensionReduction(keras.layers.Layer):
    """Reduces a feature map to a feature vector with strided convolutions.

    The paper's dimension-reduction module: strided Conv+BN+LeakyReLU stages
    bring the map to at most 4x4, a last Conv+BN+LeakyReLU whose kernel
    covers the rest gives 1x1, and a Dense+LeakyReLU gives the vector of
    length `units`. The stages follow from the input size (see
    `keras_dynfilt.layers.dimension_reduction.reduction_schedule`); for
    28x28 and 14x14 maps they are exactly the paper's tables 6 and 7. It
    turns an autoencoder's feature map into the sample feature vector `z`
    that drives a `keras_dynfilt.layers.FilterGenerator`.

    Reference:
        - [Shen & Liu, Learning to generate filters for convolutional neural
          networks](https://arxiv.org/abs/1812.01894), appendix A.1

    Args:
        units: Positive integer, the length of the output vector.
        filters: Positive integer, the channels of every convolution;
            `None` (default) keeps the input's channel count, as the paper
            does.
        negative_slope: Float >= 0, the LeakyReLU slope for negative inputs.
        momentum: Float in [0, 1), the batch-normalization momentum
            (default 0.9: PyTorch's default of 0.1 in Keras's convention).
        kernel_initializer: Initializer of the convolution and dense kernels.
        kernel_regularizer: Optional regularizer of those kernels.
        **kwargs: Base layer keyword arguments, such as `name` and `dtype`.

    Call arguments:
        - `inputs`: The feature map, `(batch_size, height, width, channels)`.
        - `training`: Python boolean, whether batch normalization uses the batch
          statistics (training) or its moving averages (inference).

    Input shape:
        `(batch_size, height, width, channels)` with known height, width and
        channels.

    Output shape:
        `(batch_size, units)`.

    Examples:
        >>> x = keras.ops.ones((2, 28, 28, 20))
        >>> keras.ops.shape(keras_dynfilt.layers.DimensionReduction(20)(x))
        (2, 20)
    """

    def __init__(
        self,
        units,
        filters=None,
        negative_slope=0.01,
        momentum=0.9,
        kernel_initializer="glorot_uniform",
        kernel_regularizer=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.units = check_positive_int(units, "units")
        self.filters = check_int(filters, "filters", 1, allow_none=True)
        self.momentum = check_float(
            momentum, "momentum", 0.0, 1.0, max_open=True
        )
        self.negative_slope = check_float(
            negative_slope, "negative_slope", 0.0
        )
        self.kernel_initializer = get_initializer(
            kernel_initializer, "kernel_initializer"
        )
        self.kernel_regularizer = get_regularizer(
            kernel_regularizer, "kernel_regularizer"
        )

    def _conv_block(self, filters, kernel, strides, padding, name):
        common = {"dtype": self.dtype_policy}
        return [
            keras.layers.Conv2D(
                filters,
                kernel,
                strides=strides,
                padding=padding,
                use_bias=False,
                kernel_initializer=self.kernel_initializer,
                kernel_regularizer=self.kernel_regularizer,
                name=f"{name}_conv",
                **common,
            ),
            keras.layers.BatchNormalization(
                momentum=self.momentum, name=f"{name}_bn", **common
            ),
            keras.layers.LeakyReLU(
                self.negative_slope, name=f"{name}_lrelu", **common
            ),
        ]

    def build(self, input_shape):
        if len(input_shape) != 4 or any(d is None for d in input_shape[1:]):
            raise ValueError(
                "DimensionReduction expects (batch_size, height, width, "
                "channels) with known height, width and channels. "
                f"Received: input_shape={tuple(input_shape)}"
            )
        # The stages follow from the size: later calls must match it.
        self.input_spec = keras.layers.InputSpec(
            shape=(None,) + tuple(input_shape[1:])
        )
        filters = self.filters or input_shape[-1]
        strides, final_kernel = reduction_schedule(*input_shape[1:3])
        self.blocks = []
        for i, stride in enumerate(strides):
            self.blocks += self._conv_block(
                filters, stride, stride, "same", f"reduce{i + 1}"
            )
        self.blocks += self._conv_block(
            filters, final_kernel, 1, "valid", "reduce_final"
        )
        self.dense = keras.layers.Dense(
            self.units,
            kernel_initializer=self.kernel_initializer,
            kernel_regularizer=self.kernel_regularizer,
            name="fc",
            dtype=self.dtype_policy,
        )
        self.dense_activation = keras.layers.LeakyReLU(
            self.negative_slope, name="fc_lrelu", dtype=self.dtype_policy
        )
        shape = tuple(input_shape)
        for layer in self.blocks:
            layer.build(shape)
            shape = layer.compute_output_shape(shape)
        self.dense.build((shape[0], filters))

    def call(self, inputs, training=None):
        check_float_inputs(self, inputs)
        x = inputs
        for layer in self.blocks:
            if isinstance(layer, keras.layers.BatchNormalization):
                x = layer(x, training=training)
            else:
                x = layer(x)
        x = ops.reshape(x, (-1, x.shape[-1]))
        return self.dense_activation(self.dense(x))

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.units)

    def get_config(self):
        return {
            **super().get_config(),
            "units": self.units,
            "filters": self.filters,
            "negative_slope": self.negative_slope,
            "momentum": self.momentum,
            "kernel_initializer": keras.initializers.serialize(
                self.kernel_initializer
            ),
            "kernel_regularizer": keras.regularizers.serialize(
                self.kernel_regularizer
            ),
        }
