import keras
from keras import ops

from keras_dynfilt._validation import (
    MAX_SIZE,
    check_bool,
    check_float_inputs,
    check_positive_int,
    get_activation,
    get_constraint,
    get_initializer,
    get_regularizer,
)

_IMPLEMENTATIONS = ("auto", "mix", "patches")


def _normalize_tuple(value, name):
    pair = (value, value) if isinstance(value, int) else value
    if (
        isinstance(value, bool)
        or not isinstance(pair, (tuple, list))
        or len(pair) != 2
        or any(isinstance(v, bool) or not isinstance(v, int) for v in pair)
        or any(v < 1 or v > MAX_SIZE for v in pair)
    ):
        raise ValueError(
            f"`{name}` must be a positive integer or a tuple of 2 positive "
            f"integers. Received: {name}={value!r}"
        )
    return tuple(pair)


def _conv_output_length(length, kernel, stride, dilation, padding):
    if length is None:
        return None
    if padding == "same":
        return (length + stride - 1) // stride
    effective = (kernel - 1) * dilation + 1
    return max(length - effective, -1) // stride + 1


@keras.saving.register_keras_serializable(package="keras_dynfilt")
class FilterGenerator(keras.layers.Layer):
    """2D convolution with sample-specific filters from a filter repository.

    Each sample gets its own convolution kernel. A trainable *filter
    repository* holds `repository_size` base filters `b_j` of shape
    `(kh, kw, in_channels)`, orthogonally initialised. A dense map turns the
    sample feature vector `z` of length `Lf` into coefficients
    `w = reshape(z @ A + c, (filters, repository_size))` (`A` has
    `Lf x filters x repository_size` weights), and filter `i` of sample `b`
    is `k_bi = sum_j w_bij b_j`. Output channel `i` of sample `b` is
    `conv(x_b, k_bi) + bias_i`.

    Because convolution is linear in the kernel, the layer never forms the
    per-sample kernels on its default path: it convolves `x` once with the
    `repository_size` base filters (an ordinary static convolution) and mixes
    the resulting maps per sample,
    `y = einsum("bhwm,bnm->bhwn", conv(x, b), w)`. This is exact, works with
    any (dynamic) batch size, under XLA and in mixed precision, and costs a
    static convolution with `repository_size` filters plus
    `filters x repository_size` multiply-adds per output pixel. When the
    repository is much larger than `filters`, the `"patches"` path is
    cheaper: it builds the per-sample kernels and multiplies them with the
    image patches (`im2col` from strided slices, one batched matrix product).
    That path only pays off when XLA compiles it: `implementation="auto"`
    takes it on the JAX backend when it needs less than half the
    multiply-adds of the mix, and always takes the mix on TensorFlow (whose
    default on CPU is a graph without XLA); with `jit_compile=True` on
    TensorFlow and `repository_size` well above `filters`, pass
    `implementation="patches"`.

    Reference:
        - [Shen & Liu, Learning to generate filters for convolutional neural
          networks](https://arxiv.org/abs/1812.01894)

    Args:
        filters: Positive integer, the number of output channels `N`.
        kernel_size: Integer or tuple of 2 integers, the kernel height and
            width.
        repository_size: Positive integer, the number of base filters `M` in
            the repository.
        strides: Integer or tuple of 2 integers. Defaults to `1`.
        padding: `"valid"` or `"same"` (case-insensitive).
        dilation_rate: Integer or tuple of 2 integers. Defaults to `1`.
        activation: Activation applied to the output. Defaults to `None`.
        use_bias: Boolean, whether to add a static per-channel bias.
        use_coefficient_bias: Boolean, whether the dense map from `z` to the
            coefficients has a bias `c` (with `z = 0` the layer is then a
            static convolution with kernels `sum_j c_ij b_j`).
        implementation: `"auto"`, `"mix"` (static convolution with the base
            filters, then a per-sample mix) or `"patches"` (per-sample kernels
            times image patches). All three give the same result.
        repository_initializer: Initializer of the repository, shape
            `(kh, kw, in_channels, repository_size)`. Defaults to
            `"orthogonal"` (orthonormal base filters when
            `repository_size <= kh * kw * in_channels`).
        coefficient_initializer: Initializer of the coefficient kernel `A`,
            shape `(Lf, filters * repository_size)`.
        coefficient_bias_initializer: Initializer of `c`.
        bias_initializer: Initializer of the output bias.
        repository_regularizer: Optional regularizer of the repository.
        coefficient_regularizer: Optional regularizer of `A`.
        bias_regularizer: Optional regularizer of the output bias.
        activity_regularizer: Optional regularizer of the output.
        repository_constraint: Optional constraint on the repository.
        coefficient_constraint: Optional constraint on `A`.
        bias_constraint: Optional constraint on the output bias.
        **kwargs: Base layer keyword arguments, such as `name` and `dtype`.

    Call arguments:
        - `inputs`: A list `[x, z]`: the feature map `x` of shape
          `(batch_size, height, width, in_channels)` and the sample feature
          vector `z` of shape `(batch_size, Lf)`.

    Input shape:
        `[(batch_size, height, width, in_channels), (batch_size, Lf)]`.

    Output shape:
        `(batch_size, new_height, new_width, filters)`, with the sizes of a
        `keras.layers.Conv2D` of the same `kernel_size`, `strides`, `padding`
        and `dilation_rate`.

    Examples:
        >>> x = keras.ops.ones((2, 28, 28, 1))
        >>> z = keras.ops.ones((2, 20))
        >>> layer = keras_dynfilt.layers.FilterGenerator(
        ...     5, 5, repository_size=5)
        >>> keras.ops.shape(layer([x, z]))
        (2, 24, 24, 5)
        >>> keras.ops.shape(layer.generate_filters(z))
        (2, 5, 5, 1, 5)
    """

    def __init__(
        self,
        filters,
        kernel_size,
        repository_size,
        strides=1,
        padding="valid",
        dilation_rate=1,
        activation=None,
        use_bias=True,
        use_coefficient_bias=True,
        implementation="auto",
        repository_initializer="orthogonal",
        coefficient_initializer="glorot_uniform",
        coefficient_bias_initializer="zeros",
        bias_initializer="zeros",
        repository_regularizer=None,
        coefficient_regularizer=None,
        bias_regularizer=None,
        activity_regularizer=None,
        repository_constraint=None,
        coefficient_constraint=None,
        bias_constraint=None,
        **kwargs,
    ):
        super().__init__(
            activity_regularizer=get_regularizer(
                activity_regularizer, "activity_regularizer"
            ),
            **kwargs,
        )
        self.filters = check_positive_int(filters, "filters")
        self.kernel_size = _normalize_tuple(kernel_size, "kernel_size")
        self.repository_size = check_positive_int(
            repository_size, "repository_size"
        )
        self.strides = _normalize_tuple(strides, "strides")
        self.dilation_rate = _normalize_tuple(dilation_rate, "dilation_rate")
        if not isinstance(padding, str) or padding.lower() not in (
            "valid",
            "same",
        ):
            raise ValueError(
                "`padding` must be 'valid' or 'same'. "
                f"Received: padding={padding!r}"
            )
        self.padding = padding.lower()
        if implementation not in _IMPLEMENTATIONS:
            raise ValueError(
                f"`implementation` must be one of {_IMPLEMENTATIONS}. "
                f"Received: implementation={implementation!r}"
            )
        self.implementation = implementation
        self.activation = get_activation(activation, "activation")
        self.use_bias = check_bool(use_bias, "use_bias")
        self.use_coefficient_bias = check_bool(
            use_coefficient_bias, "use_coefficient_bias"
        )
        for argument, value, get in (
            ("repository_initializer", repository_initializer,
             get_initializer),
            ("coefficient_initializer", coefficient_initializer,
             get_initializer),
            ("coefficient_bias_initializer", coefficient_bias_initializer,
             get_initializer),
            ("bias_initializer", bias_initializer, get_initializer),
            ("repository_regularizer", repository_regularizer,
             get_regularizer),
            ("coefficient_regularizer", coefficient_regularizer,
             get_regularizer),
            ("bias_regularizer", bias_regularizer, get_regularizer),
            ("repository_constraint", repository_constraint, get_constraint),
            ("coefficient_constraint", coefficient_constraint,
             get_constraint),
            ("bias_constraint", bias_constraint, get_constraint),
        ):
            setattr(self, argument, get(value, argument))

    # -- shapes -----------------------------------------------------------
    def _split_shapes(self, input_shape):
        if (
            not isinstance(input_shape, (list, tuple))
            or len(input_shape) != 2
            or not all(isinstance(s, (list, tuple)) for s in input_shape)
        ):
            raise ValueError(
                "FilterGenerator expects a list of two inputs [x, z]. "
                f"Received: input_shape={input_shape!r}"
            )
        x_shape, z_shape = (tuple(s) for s in input_shape)
        if len(x_shape) != 4:
            raise ValueError(
                "`x` must be of rank 4 (batch_size, height, width, "
                f"channels). Received: x.shape={x_shape}"
            )
        if len(z_shape) != 2:
            raise ValueError(
                "`z` must be of rank 2 (batch_size, features). "
                f"Received: z.shape={z_shape}"
            )
        if (
            x_shape[0] is not None
            and z_shape[0] is not None
            and x_shape[0] != z_shape[0]
        ):
            raise ValueError(
                "`x` and `z` must have the same batch size. "
                f"Received: x.shape={x_shape}, z.shape={z_shape}"
            )
        return x_shape, z_shape

    def _output_spatial(self, height, width):
        return tuple(
            _conv_output_length(n, k, s, d, self.padding)
            for n, k, s, d in zip(
                (height, width),
                self.kernel_size,
                self.strides,
                self.dilation_rate,
            )
        )

    def _check_output_size(self, x_shape):
        out_h, out_w = self._output_spatial(x_shape[1], x_shape[2])
        if (out_h is not None and out_h < 1) or (
            out_w is not None and out_w < 1
        ):
            raise ValueError(
                "`x` is smaller than the dilated kernel with padding='valid'. "
                f"Received: x.shape={x_shape}, kernel_size={self.kernel_size}"
                f", dilation_rate={self.dilation_rate}"
            )

    def build(self, input_shape):
        x_shape, z_shape = self._split_shapes(input_shape)
        if x_shape[-1] is None:
            raise ValueError(
                "The channel dimension of `x` must be defined. "
                f"Received: x.shape={x_shape}"
            )
        if z_shape[-1] is None:
            raise ValueError(
                "The feature dimension of `z` must be defined. "
                f"Received: z.shape={z_shape}"
            )
        self._check_output_size(x_shape)
        in_channels = x_shape[-1]
        # Later calls must match what the layer was built for.
        self.input_spec = [
            keras.layers.InputSpec(ndim=4, axes={-1: in_channels}),
            keras.layers.InputSpec(ndim=2, axes={-1: z_shape[-1]}),
        ]
        self.repository = self.add_weight(
            name="repository",
            shape=(*self.kernel_size, in_channels, self.repository_size),
            initializer=self.repository_initializer,
            regularizer=self.repository_regularizer,
            constraint=self.repository_constraint,
        )
        self.coefficient_kernel = self.add_weight(
            name="coefficient_kernel",
            shape=(z_shape[-1], self.filters * self.repository_size),
            initializer=self.coefficient_initializer,
            regularizer=self.coefficient_regularizer,
            constraint=self.coefficient_constraint,
        )
        if self.use_coefficient_bias:
            self.coefficient_bias = self.add_weight(
                name="coefficient_bias",
                shape=(self.filters * self.repository_size,),
                initializer=self.coefficient_bias_initializer,
            )
        else:
            self.coefficient_bias = None
        if self.use_bias:
            self.bias = self.add_weight(
                name="bias",
                shape=(self.filters,),
                initializer=self.bias_initializer,
                regularizer=self.bias_regularizer,
                constraint=self.bias_constraint,
            )
        else:
            self.bias = None

    # -- maths ------------------------------------------------------------
    def compute_coefficients(self, z):
        """Per-sample coefficients `w` of shape `(batch, filters, M)`."""
        w = ops.matmul(z, self.coefficient_kernel)
        if self.coefficient_bias is not None:
            w = ops.add(w, self.coefficient_bias)
        return ops.reshape(w, (-1, self.filters, self.repository_size))

    def generate_filters(self, z):
        """The per-sample kernels, `(batch, kh, kw, in_channels, filters)`.

        Args:
            z: The sample feature vectors, shape `(batch_size, Lf)`, with
                the `Lf` the layer was built for.

        Returns:
            `k[b, ..., i] = sum_j w[b, i, j] * repository[..., j]`.

        Raises:
            ValueError: if the layer is not built yet (the repository's
                shape comes from the image input) or `z` is not
                `(batch_size, Lf)`.
        """
        if not self.built:
            raise ValueError(
                f"Layer '{self.name}' is not built: `generate_filters` needs "
                "its repository, whose shape comes from the image input. "
                "Call the layer on `[x, z]` (or `build([x_shape, z_shape])`) "
                "first. Received: z with an unbuilt layer"
            )
        z = ops.convert_to_tensor(z, dtype=self.compute_dtype)
        expected = self.coefficient_kernel.shape[0]
        shape = tuple(z.shape)
        if len(shape) != 2 or shape[-1] not in (None, expected):
            raise ValueError(
                f"`z` of layer '{self.name}' must have shape (batch_size, "
                f"{expected}), the feature width it was built for. "
                f"Received: z.shape={shape}"
            )
        return ops.einsum(
            "hwcm,bnm->bhwcn",
            ops.cast(self.repository, self.compute_dtype),
            self.compute_coefficients(z),
        )

    def _select_implementation(self, x_shape):
        if self.implementation != "auto":
            return self.implementation
        if keras.backend.backend() != "jax":
            # Measured (benchmarks/filter_generator.py): in a TensorFlow
            # graph without XLA, Keras's default on CPU, the patches path is
            # always slower than the mix.
            return "mix"
        # JAX always compiles with XLA, where gathering the patches is cheap
        # enough: compare the multiply-adds per output pixel of the static
        # convolution with the M base filters plus the mix against those of
        # the per-sample product with the patches (plus one copy per patch
        # element to gather them). A batched product of small matrices runs
        # well below a native convolution's speed
        # (benchmarks/filter_generator_jax.py), hence the factor 2.
        patch_length = self.kernel_size[0] * self.kernel_size[1] * x_shape[-1]
        mix = patch_length * self.repository_size + (
            self.filters * self.repository_size
        )
        patches = patch_length * (self.filters + 1)
        return "patches" if 2 * patches < mix else "mix"

    def _patches(self, x):
        (kh, kw), (sh, sw), (dh, dw) = (
            self.kernel_size,
            self.strides,
            self.dilation_rate,
        )
        out_h, out_w = self._output_spatial(x.shape[1], x.shape[2])
        if self.padding == "same":
            pads = []
            for n, o, k, s, d in zip(
                (x.shape[1], x.shape[2]), (out_h, out_w), (kh, kw), (sh, sw),
                (dh, dw),
            ):
                total = max((o - 1) * s + (k - 1) * d + 1 - n, 0)
                pads.append((total // 2, total - total // 2))
            x = ops.pad(x, [(0, 0), pads[0], pads[1], (0, 0)])
        slices = []
        for i in range(kh):
            for j in range(kw):
                slices.append(
                    x[
                        :,
                        i * dh : i * dh + (out_h - 1) * sh + 1 : sh,
                        j * dw : j * dw + (out_w - 1) * sw + 1 : sw,
                        :,
                    ]
                )
        # (batch, out_h, out_w, kh * kw * in_channels), in (kh, kw, c) order.
        return ops.concatenate(slices, axis=-1)

    def _static_conv(self, x, kernel):
        if max(self.strides) == 1 or max(self.dilation_rate) == 1:
            return ops.conv(
                x,
                kernel,
                strides=self.strides,
                padding=self.padding,
                dilation_rate=self.dilation_rate,
            )
        # TensorFlow has no convolution that is both strided and dilated:
        # convolve with stride 1 and keep every stride-th output, starting
        # where the strided convolution's first window starts.
        maps = ops.conv(
            x, kernel, padding=self.padding, dilation_rate=self.dilation_rate
        )
        out_h, out_w = self._output_spatial(x.shape[1], x.shape[2])
        starts = []
        for n, o, k, s, d in zip(
            (x.shape[1], x.shape[2]), (out_h, out_w), self.kernel_size,
            self.strides, self.dilation_rate,
        ):
            if self.padding == "valid":
                starts.append(0)
                continue
            effective = (k - 1) * d + 1
            strided = max((o - 1) * s + effective - n, 0) // 2
            starts.append((effective - 1) // 2 - strided)
        (sh, sw), (h0, w0) = self.strides, starts
        return maps[
            :,
            h0 : h0 + (out_h - 1) * sh + 1 : sh,
            w0 : w0 + (out_w - 1) * sw + 1 : sw,
            :,
        ]

    def call(self, inputs):
        x, z = inputs
        self._split_shapes([tuple(x.shape), tuple(z.shape)])
        self._check_output_size(tuple(x.shape))
        check_float_inputs(self, inputs)
        coefficients = self.compute_coefficients(z)
        repository = ops.cast(self.repository, self.compute_dtype)
        static_size = x.shape[1] is not None and x.shape[2] is not None
        if not static_size or self._select_implementation(x.shape) == "mix":
            maps = self._static_conv(x, repository)
            outputs = ops.einsum("bhwm,bnm->bhwn", maps, coefficients)
        else:
            kernels = ops.einsum("km,bnm->bkn", ops.reshape(
                repository, (-1, self.repository_size)
            ), coefficients)
            patches = self._patches(x)
            outputs = ops.einsum("bhwk,bkn->bhwn", patches, kernels)
        if self.bias is not None:
            outputs = ops.add(outputs, ops.cast(self.bias, outputs.dtype))
        if self.activation is not None:
            outputs = self.activation(outputs)
        return outputs

    def compute_output_shape(self, input_shape):
        x_shape, _ = self._split_shapes(input_shape)
        out_h, out_w = self._output_spatial(x_shape[1], x_shape[2])
        return (x_shape[0], out_h, out_w, self.filters)

    def get_config(self):
        serialize = keras.initializers.serialize
        return {
            **super().get_config(),
            "filters": self.filters,
            "kernel_size": self.kernel_size,
            "repository_size": self.repository_size,
            "strides": self.strides,
            "padding": self.padding,
            "dilation_rate": self.dilation_rate,
            "activation": keras.activations.serialize(self.activation),
            "use_bias": self.use_bias,
            "use_coefficient_bias": self.use_coefficient_bias,
            "implementation": self.implementation,
            "repository_initializer": serialize(self.repository_initializer),
            "coefficient_initializer": serialize(
                self.coefficient_initializer
            ),
            "coefficient_bias_initializer": serialize(
                self.coefficient_bias_initializer
            ),
            "bias_initializer": serialize(self.bias_initializer),
            "repository_regularizer": keras.regularizers.serialize(
                self.repository_regularizer
            ),
            "coefficient_regularizer": keras.regularizers.serialize(
                self.coefficient_regularizer
            ),
            "bias_regularizer": keras.regularizers.serialize(
                self.bias_regularizer
            ),
            "activity_regularizer": keras.regularizers.serialize(
                self.activity_regularizer
            ),
            "repository_constraint": keras.constraints.serialize(
                self.repository_constraint
            ),
            "coefficient_constraint": keras.constraints.serialize(
                self.coefficient_constraint
            ),
            "bias_constraint": keras.constraints.serialize(
                self.bias_constraint
            ),
        }
