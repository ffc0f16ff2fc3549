import math

import keras
import numpy as np
from keras import ops

from keras_dynfilt._validation import (
    FLOAT32_MAX,
    check_bool,
    check_float,
    check_float_inputs,
    check_same_batch,
    get_activation,
    get_regularizer,
)
from keras_dynfilt.optimizers.lr_multiplier import set_lr_multiplier

# The reference code's weight decay 5e-4 is TensorFlow's `5e-4 * l2_loss(W)`
# = 5e-4 * sum(W**2) / 2 (gradient 5e-4 * W); Keras's L2(l2) is
# l2 * sum(W**2), so the same decay is L2(2.5e-4).
DEFAULT_WEIGHT_DECAY = 5e-4


def _shape_str(shapes):
    return "[" + ", ".join(str(tuple(s)) for s in shapes) + "]"


def check_task_shapes(layer_name, input_shape, same_channels=False):
    """Validates a list of K >= 2 task feature shapes; returns it as tuples.

    Shared by `NDDR` and `CrossStitch`: equal ranks (>= 2), equal sizes on
    every axis but the batch and the channel (last) axis, defined channels.
    """
    if not isinstance(input_shape, (list, tuple)) or not all(
        isinstance(s, (list, tuple)) for s in input_shape
    ):
        raise ValueError(
            f"{layer_name} expects a list of K >= 2 task tensors. Received "
            f"a single input of shape {tuple(input_shape)}"
        )
    shapes = [tuple(s) for s in input_shape]
    if len(shapes) < 2:
        raise ValueError(
            f"{layer_name} expects a list of K >= 2 task tensors. Received "
            f"{len(shapes)} input(s) of shapes {_shape_str(shapes)}"
        )
    ranks = {len(s) for s in shapes}
    if len(ranks) != 1:
        raise ValueError(
            f"All {layer_name} inputs must have the same rank. Received "
            f"input shapes {_shape_str(shapes)}"
        )
    if min(ranks) < 2:
        raise ValueError(
            f"{layer_name} inputs must have rank >= 2 (batch, ..., channels). "
            f"Received input shapes {_shape_str(shapes)}"
        )
    for axis in range(1, len(shapes[0]) - 1):
        sizes = {s[axis] for s in shapes if s[axis] is not None}
        if len(sizes) > 1:
            raise ValueError(
                f"All {layer_name} inputs must have the same spatial size "
                f"(every axis but batch and channels). Axis {axis} differs: "
                f"input shapes {_shape_str(shapes)}"
            )
    if any(s[-1] is None for s in shapes):
        raise ValueError(
            f"The channel (last) axis of every {layer_name} input must be "
            f"defined. Received input shapes {_shape_str(shapes)}"
        )
    if same_channels and len({s[-1] for s in shapes}) != 1:
        raise ValueError(
            f"All {layer_name} inputs must have the same number of channels. "
            f"Received input shapes {_shape_str(shapes)}"
        )
    return shapes


def check_mixing_weight(value, argument):
    """`alpha`/`beta` of a diagonal initialisation: a number in [0, 1]."""
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float, np.floating, np.integer))
        or not math.isfinite(value)
        or not 0.0 <= value <= 1.0
    ):
        raise ValueError(
            f"`{argument}` must be a number in [0, 1]. "
            f"Received: {argument}={value!r}"
        )
    return float(value)


def check_lr_multiplier(value):
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float, np.floating, np.integer))
        or not math.isfinite(value)
        or value <= 0
        or value > FLOAT32_MAX
    ):
        raise ValueError(
            "`lr_multiplier` must be a finite positive number (within "
            f"float32's range). Received: lr_multiplier={value!r}"
        )
    return float(value)


def task_input_specs(shapes):
    """One `InputSpec` per task input: its rank and channel count."""
    return [
        keras.layers.InputSpec(ndim=len(s), axes={-1: s[-1]}) for s in shapes
    ]


def check_task_inputs(layer, inputs, same_channels=False):
    """Call-time checks of the K task tensors that `InputSpec` cannot make:
    the same batch size and spatial size across inputs, float dtypes."""
    check_task_shapes(
        f"{type(layer).__name__} {layer.name!r}",
        [tuple(x.shape) for x in inputs],
        same_channels,
    )
    check_same_batch(layer, inputs)
    check_float_inputs(layer, inputs)


def diagonal_nddr_kernel(channels, task, alpha, beta):
    """The diagonal initial kernel of one NDDR output, as a NumPy array.

    Shape `(sum(channels), channels[task])`: the block that reads task
    `task`'s own channels is `alpha * I`, the block that reads task `j` is
    `beta * I` of shape `(channels[j], channels[task])` (a rectangular
    identity: input channel `c` feeds output channel `c` for
    `c < min(channels[j], channels[task])`).
    """
    blocks = [
        (alpha if j == task else beta)
        * np.eye(c, channels[task], dtype="float64")
        for j, c in enumerate(channels)
    ]
    return np.concatenate(blocks, axis=0)


@keras.saving.register_keras_serializable(package="keras_dynfilt")
class NDDR(keras.layers.Layer):
    """Neural Discriminative Dimensionality Reduction (NDDR) feature fusion.

    Fuses the feature maps of K tasks at one level of K task networks: the
    K maps are concatenated on channels and, for every task `k`, a 1x1
    convolution (no bias) reduces the concatenation back to task `k`'s
    channel count, followed by batch normalization and an activation:

    ```
    y_k = activation(BN(concat(x_1, ..., x_K) @ W_k)),
    W_k of shape (C_1 + ... + C_K, C_k)
    ```

    The K convolutions are computed as one matrix product and one batch
    normalization over the `C_1 + ... + C_K` output channels (identical to K
    separate ones: batch normalization is per channel).

    Initialisation `"diagonal"`: the block of `W_k` that reads task `k`'s
    own channels is `alpha * I`, every other task's block is `beta * I`, so
    `(alpha, beta) = (1, 0)` starts from K independent single-task networks.
    When channel counts differ, the off-diagonal blocks are rectangular
    identities `beta * eye(C_j, C_k)`: input channel `c` of task `j` feeds
    output channel `c` of task `k` for `c < min(C_j, C_k)`. Any Keras
    initializer (or `"xavier"`, i.e. `"glorot_uniform"` as in the reference
    code) gives the random variant.

    The paper trains NDDR variables at 100x the base learning rate; the
    layer tags its trainable variables with `lr_multiplier`, which
    `keras_dynfilt.optimizers.LearningRateMultiplier` applies (a plain Keras
    optimizer ignores it).

    Reference:
        - [Gao et al., NDDR-CNN: Layerwise Feature Fusing in Multi-Task CNNs by
          Neural Discriminative Dimensionality Reduction (CVPR
          2019)](https://arxiv.org/abs/1801.08297)

    Args:
        init: `"diagonal"` (default), `"xavier"` or any Keras initializer
            (name, config dict or instance) for the 1x1 kernels.
        alpha: Float in [0, 1], the diagonal initial weight of a task's own
            channels. Defaults to `0.9` (the paper's choice).
        beta: Float in [0, 1], the diagonal initial weight of the other
            tasks' channels. Defaults to `0.1`. `alpha` and `beta` cannot
            both be 0.
        activation: Activation after the batch normalization. Defaults to
            `"relu"`; `None` for a linear output.
        use_batch_norm: Boolean, whether to batch-normalise the fused
            features. Defaults to `True`.
        batch_norm_momentum: Float in [0, 1), the moving-average momentum of
            the batch normalization. Defaults to `0.95` (the reference's
            decay).
        batch_norm_epsilon: Positive float added to the variance. Defaults
            to `1e-3`.
        batch_norm_synchronized: Boolean. Under a TensorFlow distribution
            strategy, compute the batch statistics over the global batch
            (all replicas) instead of each replica's share, so training
            matches one device. On JAX the statistics of a sharded batch are
            already global and the flag has no effect. Defaults to `False`.
        kernel_regularizer: Regularizer of the 1x1 kernels. Defaults to
            `keras.regularizers.L2(2.5e-4)`: the reference's weight decay
            5e-4 (gradient `5e-4 * W`; TensorFlow's `l2_loss` halves the
            squared norm, Keras's `L2` does not). `None` for no decay.
        lr_multiplier: Positive float, the learning-rate multiplier for this
            layer's trainable variables (used by `LearningRateMultiplier`).
            Defaults to `1.0`; the paper uses `100.0`.
        **kwargs: Base layer keyword arguments, such as `name` and `dtype`.

    Call arguments:
        - `inputs`: List of K >= 2 tensors `(batch_size, ..., C_k)` with the
            same rank and the same sizes on every axis but the last.
        - `training`: Python boolean, training mode for the batch
            normalization.

    Input shape:
        List of K tensors of shapes `(batch_size, ..., C_k)`, e.g.
        `(batch_size, height, width, C_k)`.

    Output shape:
        List of K tensors, output `k` with the shape of input `k`.

    Examples:
        >>> x1 = keras.ops.ones((2, 8, 8, 16))
        >>> x2 = keras.ops.ones((2, 8, 8, 16))
        >>> y1, y2 = keras_dynfilt.layers.NDDR()([x1, x2])
        >>> keras.ops.shape(y1)
        (2, 8, 8, 16)
    """

    def __init__(
        self,
        init="diagonal",
        alpha=0.9,
        beta=0.1,
        activation="relu",
        use_batch_norm=True,
        batch_norm_momentum=0.95,
        batch_norm_epsilon=1e-3,
        batch_norm_synchronized=False,
        kernel_regularizer=keras.regularizers.L2(DEFAULT_WEIGHT_DECAY / 2),
        lr_multiplier=1.0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if isinstance(init, str) and init.lower() == "diagonal":
            self.init = "diagonal"
        else:
            try:
                self.init = keras.initializers.get(
                    "glorot_uniform"
                    if isinstance(init, str) and init.lower() == "xavier"
                    else init
                )
            except (ValueError, TypeError) as error:
                raise ValueError(
                    '`init` must be "diagonal", "xavier" or a Keras '
                    f"initializer. Received: init={init!r} ({error})"
                ) from None
            if self.init is None:
                raise ValueError(
                    '`init` must be "diagonal", "xavier" or a Keras '
                    f"initializer. Received: init={init!r}"
                )
        self.alpha = check_mixing_weight(alpha, "alpha")
        self.beta = check_mixing_weight(beta, "beta")
        if self.init == "diagonal" and self.alpha == 0 and self.beta == 0:
            raise ValueError(
                "`alpha` and `beta` cannot both be 0 with the diagonal "
                "initialisation (the kernels would start at zero). "
                f"Received: alpha={alpha!r}, beta={beta!r}"
            )
        self.activation = get_activation(activation, "activation")
        self.use_batch_norm = check_bool(use_batch_norm, "use_batch_norm")
        self.batch_norm_momentum = check_float(
            batch_norm_momentum, "batch_norm_momentum", 0.0, 1.0,
            max_open=True,
        )
        self.batch_norm_epsilon = check_float(
            batch_norm_epsilon, "batch_norm_epsilon", 0.0, min_open=True
        )
        self.batch_norm_synchronized = check_bool(
            batch_norm_synchronized, "batch_norm_synchronized"
        )
        self.kernel_regularizer = get_regularizer(
            kernel_regularizer, "kernel_regularizer"
        )
        self.lr_multiplier = check_lr_multiplier(lr_multiplier)
        self.batch_norm = None
        if use_batch_norm:
            self.batch_norm = keras.layers.BatchNormalization(
                momentum=self.batch_norm_momentum,
                epsilon=self.batch_norm_epsilon,
                # Keras refuses the flag off TensorFlow; JAX's statistics of
                # a sharded global batch are global anyway.
                synchronized=(
                    batch_norm_synchronized
                    and keras.backend.backend() == "tensorflow"
                ),
                dtype=self.dtype_policy,
                name="batch_norm",
            )

    def build(self, input_shape):
        shapes = check_task_shapes("NDDR", input_shape)
        channels = [s[-1] for s in shapes]
        self._channels = channels
        # Later calls must match what the layer was built for.
        self.input_spec = task_input_specs(shapes)
        self.kernels = []
        for k, c in enumerate(channels):
            if self.init == "diagonal":
                value = diagonal_nddr_kernel(channels, k, self.alpha, self.beta)

                def initializer(shape, dtype=None, value=value):
                    return ops.cast(value, dtype)

            else:
                initializer = self.init
            self.kernels.append(
                self.add_weight(
                    name=f"kernel_{k}",
                    shape=(sum(channels), c),
                    initializer=initializer,
                    regularizer=self.kernel_regularizer,
                )
            )
        if self.batch_norm is not None:
            self.batch_norm.build(shapes[0][:-1] + (sum(channels),))
        set_lr_multiplier(self.trainable_variables, self.lr_multiplier)

    def call(self, inputs, training=None):
        check_task_inputs(self, inputs)
        x = ops.concatenate(list(inputs), axis=-1)
        kernel = ops.concatenate(
            [ops.cast(k, self.compute_dtype) for k in self.kernels], axis=-1
        )
        y = ops.matmul(x, kernel)
        if self.batch_norm is not None:
            y = self.batch_norm(y, training=training)
        if self.activation is not None:
            y = self.activation(y)
        splits = np.cumsum(self._channels)[:-1].tolist()
        return ops.split(y, splits, axis=-1)

    def compute_output_shape(self, input_shape):
        shapes = check_task_shapes("NDDR", input_shape)
        return [tuple(s) for s in shapes]

    def get_config(self):
        return {
            **super().get_config(),
            "init": (
                self.init
                if self.init == "diagonal"
                else keras.initializers.serialize(self.init)
            ),
            "alpha": self.alpha,
            "beta": self.beta,
            "activation": keras.activations.serialize(self.activation),
            "use_batch_norm": self.use_batch_norm,
            "batch_norm_momentum": self.batch_norm_momentum,
            "batch_norm_epsilon": self.batch_norm_epsilon,
            "batch_norm_synchronized": self.batch_norm_synchronized,
            "kernel_regularizer": keras.regularizers.serialize(
                self.kernel_regularizer
            ),
            "lr_multiplier": self.lr_multiplier,
        }
