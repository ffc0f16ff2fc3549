import math
import re
import warnings

import keras
from keras import ops

from keras_dynfilt import _keras_private
from keras_dynfilt._validation import FLOAT32_MAX

# Name of the attribute a layer sets on its variables to ask for a scaled
# learning rate (see `set_lr_multiplier`). It lives on the variable object, so
# it is re-created whenever the layer is built (also after `load_model`).
_ATTRIBUTE = "_keras_dynfilt_lr_multiplier"


def _check_multiplier(value, argument):
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value < 0
        # A multiplier beyond float32's range makes the step infinite.
        or value > FLOAT32_MAX
    ):
        raise ValueError(
            f"`{argument}` must be a finite, non-negative number (at most "
            f"{FLOAT32_MAX:.4g}, float32's largest). "
            f"Received: {argument}={value!r}"
        )
    return float(value)


def set_lr_multiplier(target, multiplier):
    """Tags variables with a learning-rate multiplier.

    `LearningRateMultiplier` reads the tag when it is built and trains each
    tagged variable at `multiplier` times the base learning rate. Layers of
    this library that take an `lr_multiplier` argument (`NDDR`,
    `CrossStitch`) tag their own variables when they are built; use this
    function for any other layer (e.g. the shortcut convolutions of
    `nddr_network`).

    The tag lives on the variable object: tag a layer after it is built, and
    again after reloading a saved model (or pass `multipliers=` patterns to
    the optimizer, which are saved with it).

    Args:
        target: A `keras.Variable`, a built `keras.layers.Layer` (all its
            trainable variables, sublayers included) or a list of those.
        multiplier: Finite non-negative float.

    Returns:
        The list of variables tagged.
    """
    multiplier = _check_multiplier(multiplier, "multiplier")
    if isinstance(target, (list, tuple)):
        tagged = []
        for item in target:
            tagged.extend(set_lr_multiplier(item, multiplier))
        return tagged
    if isinstance(target, keras.layers.Layer):
        if not target.built:
            raise ValueError(
                "`set_lr_multiplier` needs a built layer (its variables must "
                f"exist). Received: target=layer {target.name!r} that is not "
                "built"
            )
        variables = list(target.trainable_variables)
    elif isinstance(target, keras.Variable):
        variables = [target]
    else:
        raise TypeError(
            "`target` must be a keras.Variable, a keras.layers.Layer or a list "
            f"of those. Received: target of type {type(target).__name__}"
        )
    for variable in variables:
        setattr(variable, _ATTRIBUTE, multiplier)
    return variables


def get_lr_multiplier(variable):
    """The multiplier tagged on `variable` by `set_lr_multiplier`, or None."""
    return getattr(variable, _ATTRIBUTE, None)


@keras.saving.register_keras_serializable(package="keras_dynfilt")
class LearningRateMultiplier(keras.optimizers.Optimizer):
    """Per-variable learning rates for any Keras optimizer.

    Wraps an optimizer and trains selected variables at `multiplier` times
    its learning rate. The wrapped optimizer's `update_step` receives the
    scaled learning rate for those variables, so each step moves them exactly
    as the same optimizer with a learning rate of `multiplier * lr` would:
    with SGD (plain, momentum or Nesterov) a step is `multiplier` times as
    long; with Adam-like optimizers the *normalised* step is `multiplier`
    times as long (which is not what scaling the gradient would do: Adam is
    invariant to gradient scale). Everything else stays the wrapped
    optimizer's: its state, gradient clipping, loss scaling, gradient
    accumulation, EMA, and its decoupled `weight_decay`, which keeps the
    base learning rate (an L2 `kernel_regularizer` goes through the gradient
    and is therefore scaled with it).

    The multiplier of a variable is, in this order: the first entry of
    `multipliers` whose regular expression matches the variable's `path`
    (`re.search`); the tag set by `set_lr_multiplier` (layers with an
    `lr_multiplier` argument, such as `NDDR`, tag their own variables); 1.

    What is exact, for every Keras built-in it accepts (measured per
    optimizer by `examples/optimizers/lr_multiplier_table.py`, table on the
    NDDR docs page, checked by the test suite): a tagged variable follows
    exactly the trajectory it would have under the same optimizer built with
    `learning_rate=multiplier * lr` (apart from decoupled weight decay, see
    above). A step `multiplier` times as long follows from that only where
    the step is proportional to the learning rate: SGD, Adam, AdamW, Adamax,
    Nadam, RMSprop, Adagrad, Adadelta, Lion, Muon and ScheduleFreeAdamW.
    `Adafactor` caps its rate at `1 / sqrt(step)` and scales steps by the
    variable's RMS, and `Lamb` scales them by a trust ratio that grows with
    the weights: after 10 steps with a multiplier of 100 the tagged
    variable has moved about 78x (Adafactor) or 4,500x (Lamb) as far as the
    untagged one. `Ftrl` (update not proportional to the learning rate),
    `LossScaleOptimizer` (wrap the other way round) and `MultiOptimizer`
    (which never calls its own update step; wrap the optimizers inside it)
    are rejected. Works under `tf.distribute.MirroredStrategy` (the scaling
    happens inside the per-replica update) and on JAX (`stateless_apply`).

    Reference:
        - [Gao et al., NDDR-CNN: Layerwise Feature Fusing in Multi-Task CNNs by
          Neural Discriminative Dimensionality Reduction (CVPR
          2019)](https://arxiv.org/abs/1801.08297): NDDR layers are trained at
          100x the base learning rate.

    Args:
        inner_optimizer: The `keras.optimizers.Optimizer` to wrap (or its
            identifier, e.g. `"sgd"`).
        multipliers: Optional dict mapping regular expressions (matched with
            `re.search` against `variable.path`, e.g. `"nddr"`) to finite
            non-negative multipliers. Saved with the optimizer.
        name: Optional name; defaults to `"learning_rate_multiplier"`.

    Examples:
        >>> optimizer = keras_dynfilt.optimizers.LearningRateMultiplier(
        ...     keras.optimizers.SGD(0.01, momentum=0.9),
        ...     multipliers={"shortcut": 100.0})
        >>> round(float(optimizer.learning_rate), 6)  # the base rate
        0.01
    """

    def __init__(self, inner_optimizer, multipliers=None, name=None, **kwargs):
        if kwargs:
            raise ValueError(
                "LearningRateMultiplier takes no base optimizer arguments; "
                "set them on `inner_optimizer`. "
                f"Received: {sorted(kwargs)}"
            )
        if isinstance(inner_optimizer, LearningRateMultiplier):
            raise ValueError(
                "`inner_optimizer` cannot be another LearningRateMultiplier: "
                "only one wrapper's multipliers would apply. Merge their "
                "`multipliers` into one. Received: "
                f"inner_optimizer={inner_optimizer.name!r}"
            )
        try:
            if inner_optimizer is None:
                raise ValueError("None is not an optimizer")
            inner_optimizer = keras.optimizers.get(inner_optimizer)
        except (ValueError, TypeError) as error:
            raise ValueError(
                "`inner_optimizer` must be a keras.optimizers.Optimizer or "
                f"its name. Received: inner_optimizer={inner_optimizer!r} "
                f"({error})"
            ) from None
        if isinstance(inner_optimizer, keras.optimizers.Ftrl):
            raise ValueError(
                "`inner_optimizer` cannot be Ftrl: its update is not "
                "proportional to the learning rate, so a per-variable "
                "multiplier would not mean a scaled step. "
                f"Received: inner_optimizer={inner_optimizer.name!r}"
            )
        if isinstance(inner_optimizer, keras.optimizers.LossScaleOptimizer):
            raise ValueError(
                "Wrap the plain optimizer: `LearningRateMultiplier` must be "
                "inside `LossScaleOptimizer`, not around it (Keras adds loss "
                "scaling itself under mixed_float16). "
                f"Received: inner_optimizer={inner_optimizer.name!r}"
            )
        # MultiOptimizer hands each variable to one of its optimizers'
        # `apply`, so its own `update_step`, where the multiplier acts, never
        # runs: the multipliers would be silently ignored.
        multi_optimizer = getattr(keras.optimizers, "MultiOptimizer", None)
        if multi_optimizer is not None and isinstance(
            inner_optimizer, multi_optimizer
        ):
            raise ValueError(
                "`inner_optimizer` cannot be a MultiOptimizer: it never calls "
                "its own `update_step`, where the multipliers are applied. "
                "Wrap the optimizers inside it instead, e.g. "
                "`OptimizerMap(LearningRateMultiplier(SGD()))`. "
                f"Received: inner_optimizer={inner_optimizer.name!r}"
            )
        if multipliers is not None and not isinstance(multipliers, dict):
            raise TypeError(
                "`multipliers` must be None or a dict mapping regular "
                "expressions to multipliers. Received: "
                f"multipliers={multipliers!r}"
            )
        multipliers = dict(multipliers or {})
        for pattern, value in multipliers.items():
            if not isinstance(pattern, str):
                raise ValueError(
                    "The keys of `multipliers` must be regular expressions "
                    f"(strings). Received: key {pattern!r}"
                )
            try:
                re.compile(pattern)
            except re.error as error:
                raise ValueError(
                    "The keys of `multipliers` must be valid regular "
                    f"expressions. Received: {pattern!r} ({error})"
                ) from None
            multipliers[pattern] = _check_multiplier(
                value, f"multipliers[{pattern!r}]"
            )
        super().__init__(
            learning_rate=0.0, name=name or "learning_rate_multiplier"
        )
        self.inner_optimizer = inner_optimizer
        self.multipliers = multipliers
        self._variable_multipliers = []

    def multiplier_for(self, variable):
        """The learning-rate multiplier this optimizer uses for `variable`."""
        path = getattr(variable, "path", None) or variable.name
        for pattern, value in self.multipliers.items():
            if re.search(pattern, path):
                return value
        tagged = get_lr_multiplier(variable)
        return 1.0 if tagged is None else tagged

    def build(self, var_list):
        self._variable_multipliers = [self.multiplier_for(v) for v in var_list]
        paths = [getattr(v, "path", None) or v.name for v in var_list]
        unused = [
            p
            for p in self.multipliers
            if not any(re.search(p, q) for q in paths)
        ]
        if unused:
            # A typo in a pattern would otherwise train at the base rate.
            warnings.warn(
                f"LearningRateMultiplier: the `multipliers` pattern(s) "
                f"{unused} match no variable; they are ignored. Variable "
                f"paths: {paths[:10]}{' ...' if len(paths) > 10 else ''}",
                UserWarning,
                stacklevel=2,
            )
        inner = self.inner_optimizer
        if not inner.built:
            inner.build(var_list)
        if not getattr(inner, "_keras_dynfilt_wrapped", False):
            plain_update_step = inner.update_step

            def update_step(gradient, variable, learning_rate):
                # The inner optimizer's own index of `variable` (it also
                # resolves the per-replica copies of distributed variables).
                index = _keras_private.variable_index(inner, variable)
                multiplier = self._variable_multipliers[index]
                if multiplier != 1.0:
                    learning_rate = ops.multiply(learning_rate, multiplier)
                return plain_update_step(gradient, variable, learning_rate)

            inner.update_step = update_step
            inner._keras_dynfilt_wrapped = True
        super().build(var_list)

    @property
    def variables(self):
        own = _keras_private.own_optimizer_variables(self)
        return own + self.inner_optimizer.variables

    def apply(self, grads, trainable_variables=None):
        if not self.built:
            with keras.name_scope(self.name, caller=self):
                self.build(trainable_variables)
            self.built = True
        self.inner_optimizer.apply(grads, trainable_variables)

    def stateless_apply(self, optimizer_variables, grads, trainable_variables):
        if not self.built:
            raise ValueError(
                "To call `stateless_apply`, LearningRateMultiplier must be "
                "built: call `optimizer.build(trainable_variables)` first."
            )
        own = len(_keras_private.own_optimizer_variables(self))
        new_trainable, new_inner = self.inner_optimizer.stateless_apply(
            optimizer_variables[own:], grads, trainable_variables
        )
        # Own variables (iterations, the unused learning rate) are unchanged;
        # a caller such as LossScaleOptimizer may pass them as Variables.
        unchanged = [
            ops.convert_to_tensor(v) if isinstance(v, keras.Variable) else v
            for v in optimizer_variables[:own]
        ]
        return new_trainable, unchanged + list(new_inner)

    def scale_loss(self, loss):
        return self.inner_optimizer.scale_loss(loss)

    def finalize_variable_values(self, var_list):
        self.inner_optimizer.finalize_variable_values(var_list)

    @property
    def learning_rate(self):
        return self.inner_optimizer.learning_rate

    @learning_rate.setter
    def learning_rate(self, learning_rate):
        self.inner_optimizer.learning_rate = learning_rate

    @property
    def iterations(self):
        return self.inner_optimizer.iterations

    def get_config(self):
        return {
            "name": self.name,
            "inner_optimizer": keras.saving.serialize_keras_object(
                self.inner_optimizer
            ),
            "multipliers": dict(self.multipliers),
        }

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        inner = keras.saving.deserialize_keras_object(
            config.pop("inner_optimizer"), custom_objects=custom_objects
        )
        return cls(inner, **config)
