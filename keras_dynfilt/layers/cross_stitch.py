import keras
import numpy as np
from keras import ops

from keras_dynfilt._validation import check_bool
from keras_dynfilt.layers.nddr import (
    check_lr_multiplier,
    check_mixing_weight,
    check_task_inputs,
    check_task_shapes,
    task_input_specs,
)
from keras_dynfilt.optimizers.lr_multiplier import set_lr_multiplier


@keras.saving.register_keras_serializable(package="keras_dynfilt")
class CrossStitch(keras.layers.Layer):
    """Cross-stitch unit: learned linear mixing of K task feature maps.

    Output `k` is a weighted sum of the K inputs, `y_k = sum_j a_kj * x_j`,
    with one scalar `a_kj` per pair of tasks (`per_channel=False`) or one per
    pair of tasks and channel (`per_channel=True`). It is the special case
    of an `NDDR` kernel whose blocks are scalar multiples of the identity
    (and no batch normalization, activation or weight decay), kept for
    comparison. All inputs need the same shape.

    Initialisation: `a_kk = alpha`, `a_kj = beta` for `j != k` (the NDDR
    paper compares both at `(0.9, 0.1)`).

    Reference:
        - [Misra et al., Cross-stitch Networks for Multi-task Learning (CVPR
          2016)](https://arxiv.org/abs/1604.03539)
        - [Gao et al., NDDR-CNN (CVPR 2019)](https://arxiv.org/abs/1801.08297),
          section 2.

    Args:
        per_channel: Boolean. `False` (default): one scalar per pair of
            tasks, weight of shape `(K, K)`. `True`: one per pair of tasks
            and channel, weight of shape `(C, K, K)`.
        alpha: Float in [0, 1], the initial weight of a task's own input.
            Defaults to `0.9`.
        beta: Float in [0, 1], the initial weight of every other task's
            input. Defaults to `0.1`.
        lr_multiplier: Positive float, the learning-rate multiplier for the
            mixing weights (used by
            `keras_dynfilt.optimizers.LearningRateMultiplier`). Defaults to
            `1.0`.
        **kwargs: Base layer keyword arguments, such as `name` and `dtype`.

    Call arguments:
        - `inputs`: List of K >= 2 tensors of the same shape
            `(batch_size, ..., C)`.

    Input shape:
        List of K tensors of shape `(batch_size, ..., C)`.

    Output shape:
        List of K tensors of the same shape.

    Examples:
        >>> x1 = keras.ops.ones((2, 8, 8, 16))
        >>> x2 = keras.ops.zeros((2, 8, 8, 16))
        >>> y1, y2 = keras_dynfilt.layers.CrossStitch()([x1, x2])
        >>> round(float(y1[0, 0, 0, 0]), 6), round(float(y2[0, 0, 0, 0]), 6)
        (0.9, 0.1)
    """

    def __init__(
        self, per_channel=False, alpha=0.9, beta=0.1, lr_multiplier=1.0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.per_channel = check_bool(per_channel, "per_channel")
        self.alpha = check_mixing_weight(alpha, "alpha")
        self.beta = check_mixing_weight(beta, "beta")
        if self.alpha == 0 and self.beta == 0:
            raise ValueError(
                "`alpha` and `beta` cannot both be 0 (the outputs would start "
                f"at zero). Received: alpha={alpha!r}, beta={beta!r}"
            )
        self.lr_multiplier = check_lr_multiplier(lr_multiplier)

    def build(self, input_shape):
        shapes = check_task_shapes("CrossStitch", input_shape, True)
        num_tasks, channels = len(shapes), shapes[0][-1]
        # Later calls must match what the layer was built for.
        self.input_spec = task_input_specs(shapes)
        # kernel[j, k]: the weight of input j in output k.
        value = np.full((num_tasks, num_tasks), self.beta)
        np.fill_diagonal(value, self.alpha)
        shape = (num_tasks, num_tasks)
        if self.per_channel:
            value = np.broadcast_to(value, (channels, num_tasks, num_tasks))
            shape = (channels, num_tasks, num_tasks)

        def initializer(shape, dtype=None):
            return ops.cast(np.array(value), dtype)

        self.kernel = self.add_weight(
            name="kernel", shape=shape, initializer=initializer
        )
        set_lr_multiplier(self.kernel, self.lr_multiplier)

    def call(self, inputs):
        check_task_inputs(self, inputs, same_channels=True)
        # K is small: K^2 scaled additions beat stacking into one tensor.
        kernel = ops.cast(self.kernel, self.compute_dtype)
        if not self.per_channel:
            kernel = ops.expand_dims(kernel, 0)  # (1, K, K): broadcasts
        outputs = []
        for k in range(len(inputs)):
            y = inputs[0] * kernel[:, 0, k]
            for j in range(1, len(inputs)):
                y = y + inputs[j] * kernel[:, j, k]
            outputs.append(y)
        return outputs

    def compute_output_shape(self, input_shape):
        shapes = check_task_shapes("CrossStitch", input_shape, True)
        return [tuple(s) for s in shapes]

    def get_config(self):
        return {
            **super().get_config(),
            "per_channel": self.per_channel,
            "alpha": self.alpha,
            "beta": self.beta,
            "lr_multiplier": self.lr_multiplier,
        }
