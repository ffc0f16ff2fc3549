import math

import keras
import numpy as np
from keras import constraints, initializers, ops, regularizers

from keras_dynfilt._validation import (
    FLOAT32_MAX,
    check_float_inputs,
    check_num_classes,
    get_constraint,
    get_initializer,
    get_regularizer,
)

# The biased logits use (1 + alpha)²: it must stay finite in float32.
_MAX_ALPHA = math.sqrt(FLOAT32_MAX) - 1.0

# Lower bound for squared norms (weight columns and the biased-weight norm).
_SQUARED_NORM_EPSILON = 1e-12


def _concrete_value(x):
    """`x` as a NumPy array when it holds values, `None` inside a trace."""
    if isinstance(x, np.ndarray):
        return x
    if isinstance(x, keras.KerasTensor):
        return None
    try:
        return keras.ops.convert_to_numpy(x)
    except (TypeError, NotImplementedError, ValueError, AttributeError):
        # A symbolic TensorFlow tensor (tf.function) or a JAX tracer (jit).
        return None


@keras.saving.register_keras_serializable(package="keras_dynfilt")
class WSoftmaxHead(keras.layers.Layer):
    """Classifier head for the weights-biased softmax (W-Softmax) loss.

    A bias-free linear classifier whose class weight vectors are
    L2-normalised, `ŵ_j = w_j / ||w_j||`; the features `x` are *not*
    normalised. Its logits are `z_j = ŵ_j · x`.

    During training, given the integer label `y` of each sample, the logit
    of the true class is kept and every other class `j` is scored with the
    *weights-biased* vector `(ŵ_j + α ŵ_y) / ||ŵ_j + α ŵ_y||`, which leans
    towards the true class and so makes the negatives score higher. Because
    `||ŵ_j + α ŵ_y||² = 1 + α² + 2α G_yj` with `G = Ŵᵀ Ŵ`, the biased
    logits are

    `z̃_j = (z_j + α z_y) / sqrt(1 + α² + 2α G_yj)`  for `j != y`,

    computed from the plain logits and the rows of the normalised-weight
    Gram matrix picked by the labels: no `(batch, num_classes, dim)` tensor
    is ever formed. Ordinary softmax cross-entropy on these logits
    (`keras.losses.SparseCategoricalCrossentropy(from_logits=True)`) is the
    W-Softmax loss; the margin between classes grows with `α`, and `α = 0`
    is exactly softmax with normalised weights (the layer then skips the
    biasing). At inference, or whenever
    no labels are given, the head returns the plain logits `z = Ŵᵀ x`.

    The Gram rows cost extra matrix products: the full
    `(num_classes, num_classes)` Gram matrix (`2·K²·D` multiply-adds forward
    and backward) when `2·K <= 3·batch`, otherwise the rows of the labelled
    classes (`3·B·K·D`), on top of the `3·B·K·D` of a dense head. The exact
    gradient therefore costs up to twice a dense head's matrix products
    when `K` is large compared with the batch. When the batch size is
    unknown while tracing (TensorFlow graphs fed by `tf.data`), the choice
    is a `cond` on the actual batch size.

    Under a mixed precision policy the kernel stays float32 (it is not
    autocast) and the norms, logits and biased logits are computed in
    float32, then cast to the layer's compute dtype: the intermediate
    `z_j + α z_y` can exceed the float16 range for large feature norms even
    when the result does not.

    Caution: the margin argument of the paper assumes the true class scores
    `z_y > 0`. Where every logit is negative and equal, `z_j = -c`, each
    biased negative is `-c (1 + α) / ||ŵ_j + α ŵ_y|| <= -c`, so the true
    class wins *whatever the label*: features pointing away from all class
    weights drive the W-Softmax loss to zero without separating the
    classes. Training can fall into this minimum (see the docs page for
    measurements); the paper's practice of training with plain softmax
    first (`alpha=0`) and then refining makes it less likely.

    Labels outside `[0, num_classes)` raise a `ValueError` in eager calls
    and an `InvalidArgumentError` naming the range in a TensorFlow graph
    (`model.fit` on TensorFlow without XLA). Under XLA
    (`jit_compile=True`) and JAX's `jit` no run-time check is possible:
    there they give undefined logits, as with
    `keras.losses.SparseCategoricalCrossentropy`.

    Reference:
        - [Li et al., Learning Discriminative Features Via Weights-biased
          Softmax Loss](https://arxiv.org/abs/1904.11138)

    Args:
        num_classes: Positive integer >= 2, the number of classes `K`.
        alpha: Non-negative float, the weights-biasing factor `α`. The paper
            uses 0.5, 1 and 1.5. Defaults to `1.0`.
        kernel_initializer: Initializer for the `(dim, num_classes)` kernel.
            Defaults to `"glorot_uniform"` (the paper's Xavier initialiser).
        kernel_regularizer: Optional regularizer for the (unnormalised)
            kernel.
        kernel_constraint: Optional constraint for the (unnormalised)
            kernel.
        **kwargs: Base layer keyword arguments, such as `name` and `dtype`.

    Call arguments:
        - `features`: Float tensor of shape `(batch_size, dim)`.
        - `labels`: Optional integer tensor of class ids, shape
          `(batch_size,)` or `(batch_size, 1)`. Used only when `training` is
          true.
        - `training`: Python boolean. Weights-biased logits are returned only
          when it is true and `labels` are given.

    Input shape:
        `(batch_size, dim)`.

    Output shape:
        `(batch_size, num_classes)`: logits for
        `keras.losses.SparseCategoricalCrossentropy(from_logits=True)`.

    Examples:
        >>> images = keras.Input((28, 28, 1))
        >>> labels = keras.Input((), dtype="int32")
        >>> features = keras.layers.Dense(16)(keras.layers.Flatten()(images))
        >>> head = keras_dynfilt.layers.WSoftmaxHead(10, alpha=1.0)
        >>> train_model = keras.Model([images, labels], head(features, labels))
        >>> infer_model = keras.Model(images, head(features))  # same weights
        >>> infer_model.output.shape
        (None, 10)
    """

    def __init__(
        self,
        num_classes,
        alpha=1.0,
        kernel_initializer="glorot_uniform",
        kernel_regularizer=None,
        kernel_constraint=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        num_classes = check_num_classes(num_classes)
        if (
            isinstance(alpha, bool)
            or not isinstance(alpha, (int, float, np.integer, np.floating))
            or not math.isfinite(alpha)
            or alpha < 0
            or alpha > _MAX_ALPHA
        ):
            raise ValueError(
                "`alpha` must be a finite non-negative number with "
                f"(1 + alpha)² finite in float32 (alpha <= {_MAX_ALPHA:.3g}). "
                f"Received: alpha={alpha!r}"
            )
        self.num_classes = int(num_classes)
        self.alpha = float(alpha)
        self.kernel_initializer = get_initializer(
            kernel_initializer, "kernel_initializer"
        )
        self.kernel_regularizer = get_regularizer(
            kernel_regularizer, "kernel_regularizer"
        )
        self.kernel_constraint = get_constraint(
            kernel_constraint, "kernel_constraint"
        )

    @staticmethod
    def min_feature_dim(num_classes):
        """The smallest feature width the paper finds for `num_classes`.

        Returns `num_classes - 1`. The best classifier spreads its `K`
        normalised class weights evenly: every pair at the same angle (a
        regular simplex centred on the origin, pairwise cosine
        `-1 / (K - 1)`). Those `K` vectors sum to zero, so they span a
        `(K - 1)`-dimensional space, and the paper proves (section 3) that
        no `K` equiangular unit vectors exist in fewer than `K - 1`
        dimensions. A feature (last fully connected) layer narrower than
        `K - 1` units therefore cannot separate all classes equally well;
        the paper's experiments reach full accuracy from `K - 1` units on.

        Args:
            num_classes: Integer >= 2, the number of classes `K`.

        Returns:
            The integer `num_classes - 1`.
        """
        return check_num_classes(num_classes) - 1

    def _check_features_shape(self, features_shape):
        if len(features_shape) != 2:
            raise ValueError(
                "WSoftmaxHead expects features of rank 2, "
                "(batch_size, dim). "
                f"Received: features.shape={tuple(features_shape)}"
            )

    def build(self, input_shape):
        self._check_features_shape(input_shape)
        dim = input_shape[-1]
        if dim is None:
            raise ValueError(
                "The last dimension of the WSoftmaxHead features must be "
                f"defined. Received: features.shape={tuple(input_shape)}"
            )
        # Later calls must match what the layer was built for.
        self.input_spec = keras.layers.InputSpec(ndim=2, axes={-1: dim})
        # Not autocast: the normalisation and logits are float32 maths.
        self.kernel = self.add_weight(
            name="kernel",
            shape=(dim, self.num_classes),
            initializer=self.kernel_initializer,
            regularizer=self.kernel_regularizer,
            constraint=self.kernel_constraint,
            autocast=False,
        )

    def _check_labels(self, labels, features_shape):
        dtype = keras.backend.standardize_dtype(labels.dtype)
        if "int" not in dtype:
            raise TypeError(
                "`labels` must be integer class ids. "
                f"Received: labels with dtype={dtype}"
            )
        shape = tuple(labels.shape)
        if not (len(shape) == 1 or (len(shape) == 2 and shape[1] == 1)):
            raise ValueError(
                "`labels` must have shape (batch_size,) or (batch_size, 1). "
                f"Received: labels.shape={shape}"
            )
        batch = features_shape[0]
        if None not in (batch, shape[0]) and batch != shape[0]:
            raise ValueError(
                "`labels` and `features` must have the same batch size. "
                f"Received: labels.shape={shape}, "
                f"features.shape={tuple(features_shape)}"
            )

    def _check_label_values(self, labels):
        values = _concrete_value(labels)
        if values is None or values.size == 0:
            return
        low, high = int(values.min()), int(values.max())
        if low < 0 or high >= self.num_classes:
            bad = low if low < 0 else high
            raise ValueError(
                f"`labels` must be class ids in [0, {self.num_classes}). "
                f"Received: a label of {bad}"
            )

    def _assert_label_values(self, labels):
        """`labels` with a run-time range check where the backend has one.

        A traced TensorFlow graph (`model.fit` without XLA) checks with
        `tf.debugging` assertions, which raise `InvalidArgumentError` when
        the step runs. XLA (`jit_compile=True`) compiles assertions away
        and JAX has no run-time assertions inside `jit`: there labels
        outside `[0, num_classes)` go unchecked.
        """
        if keras.backend.backend() != "tensorflow":
            return labels
        import tensorflow as tf

        if tf.executing_eagerly():
            return labels  # read and checked by `_check_label_values`
        message = (
            f"`labels` of layer '{self.name}' must be class ids in "
            f"[0, {self.num_classes}). Received: labels outside it"
        )
        checks = [
            tf.debugging.assert_greater_equal(
                labels, tf.cast(0, labels.dtype), message=message
            ),
            tf.debugging.assert_less(
                labels, tf.cast(self.num_classes, labels.dtype),
                message=message,
            ),
        ]
        with tf.control_dependencies(checks):
            return tf.identity(labels)

    def _normalized_kernel(self):
        kernel = ops.cast(self.kernel, "float32")
        squared = ops.sum(ops.square(kernel), axis=0, keepdims=True)
        return kernel * ops.rsqrt(
            ops.maximum(squared, _SQUARED_NORM_EPSILON)
        )

    def _gram_rows(self, kernel, labels):
        # Row y of G = Ŵᵀ Ŵ for every label y, shape (batch, num_classes).
        # The full Gram matrix costs K²·D multiply-adds forward and K²·D
        # backward; the rows of the labelled classes B·K·D forward and
        # 2·B·K·D backward: take the cheaper, at trace time when the batch
        # size is static, otherwise with a `cond` on the actual batch size.
        def gram():
            return ops.matmul(ops.transpose(kernel), kernel)

        batch = labels.shape[0]
        if batch is None:
            return self._dynamic_gram_rows(kernel, labels, gram)
        if self._full_gram_is_cheaper(batch):
            return ops.take(gram(), labels, axis=0)
        label_weights = ops.take(kernel, labels, axis=1)
        return ops.matmul(ops.transpose(label_weights), kernel)

    def _dynamic_gram_rows(self, kernel, labels, gram):
        # The gathers stay out of the `cond` branches: TensorFlow's type
        # inference rejects the sparse gradient of a gather inside a branch
        # and logs "Type inference failed" (tensorflow#57052). The full
        # branch picks its rows with a one-hot product instead, 2·B·K²
        # more multiply-adds, small where that branch is taken (K <= 1.5·B).
        label_weights = ops.take(kernel, labels, axis=1)

        def full():
            one_hot = ops.one_hot(labels, self.num_classes, dtype=kernel.dtype)
            return ops.matmul(one_hot, gram())

        def rows():
            return ops.matmul(ops.transpose(label_weights), kernel)

        return ops.cond(
            self._full_gram_is_cheaper(ops.shape(labels)[0]), full, rows
        )

    def _full_gram_is_cheaper(self, batch):
        return 2 * self.num_classes <= 3 * batch

    def _biasing_logit(self, positive):
        # The true-class logit z_y that biases the negatives; a hook for
        # variants of the loss (the example's `max(z_y, 0)` experiment).
        return positive

    def call(self, features, labels=None, training=None):
        check_float_inputs(self, features)
        kernel = self._normalized_kernel()
        logits = ops.matmul(ops.cast(features, "float32"), kernel)
        if labels is None or not training:
            return ops.cast(logits, self.compute_dtype)
        self._check_labels(labels, features.shape)
        self._check_label_values(labels)
        if self.alpha == 0.0:
            # z̃_j = z_j exactly; skip the work (and rsqrt's rounding).
            return ops.cast(logits, self.compute_dtype)
        labels = ops.reshape(ops.cast(labels, "int32"), (-1,))
        labels = self._assert_label_values(labels)
        alpha = self.alpha
        is_label = ops.one_hot(labels, self.num_classes, dtype="bool")
        # z_y as a masked sum: element-wise work that fuses, where a gather
        # would need a scatter in the backward pass.
        positive = ops.sum(
            ops.where(is_label, logits, 0.0), axis=1, keepdims=True
        )
        gram_rows = self._gram_rows(kernel, labels)
        squared_norm = 1.0 + alpha * alpha + 2.0 * alpha * gram_rows
        biased = (logits + alpha * self._biasing_logit(positive)) * ops.rsqrt(
            ops.maximum(squared_norm, _SQUARED_NORM_EPSILON)
        )
        logits = ops.where(is_label, logits, biased)
        return ops.cast(logits, self.compute_dtype)

    def compute_output_shape(self, input_shape):
        self._check_features_shape(input_shape)
        return (input_shape[0], self.num_classes)

    def compute_output_spec(self, features, labels=None, training=None):
        if labels is not None:
            self._check_labels(labels, features.shape)
        return keras.KerasTensor(
            self.compute_output_shape(features.shape),
            dtype=self.compute_dtype,
        )

    def get_config(self):
        return {
            **super().get_config(),
            "num_classes": self.num_classes,
            "alpha": self.alpha,
            "kernel_initializer": initializers.serialize(
                self.kernel_initializer
            ),
            "kernel_regularizer": regularizers.serialize(
                self.kernel_regularizer
            ),
            "kernel_constraint": constraints.serialize(self.kernel_constraint),
        }
