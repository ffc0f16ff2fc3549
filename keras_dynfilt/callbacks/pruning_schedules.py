"""Pruning schedules: when to prune and how much, as a function of the step.

A schedule is any callable `schedule(step) -> (should_prune, sparsity)`,
the protocol of tensorflow-model-optimization's `PruningSchedule`; `step` is
the number of optimizer steps taken so far. `SoftFilterPruning` accepts
these classes, `tfmot.sparsity.keras.ConstantSparsity` /
`PolynomialDecay` objects when a user has tfmot installed, or any callable
with the same protocol. These two follow tfmot's semantics exactly but are
plain Python (no TensorFlow), so they run on every Keras backend. Both are
registered Keras serializables (`keras_dynfilt>ConstantSparsity`, ...):
`keras.saving.serialize_keras_object` / `deserialize_keras_object` round
trip them, and `from_config` also accepts the `"config"` part of a tfmot
schedule's `get_config()`.
"""

import numbers

import keras
import numpy as np

from keras_dynfilt._validation import check_float


def _as_step(step):
    return int(np.asarray(keras.ops.convert_to_numpy(step)).reshape(()))


def _check_sparsity(name, value):
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Real)
        or not 0.0 <= value < 1.0
    ):
        raise ValueError(
            f"`{name}` must be a float in [0, 1). Received: {name}={value!r}"
        )
    return float(value)


def _check_int(name, value, minimum):
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Integral)
        or value < minimum
    ):
        raise ValueError(
            f"`{name}` must be an integer >= {minimum}. "
            f"Received: {name}={value!r}"
        )
    return int(value)


class PruningSchedule:
    """Base class of the pruning schedules (tfmot's protocol).

    Subclasses implement `__call__(step) -> (should_prune, sparsity)` and
    `get_config()`. `should_prune_in_step` gives tfmot's rule: prune at
    steps `begin_step, begin_step + frequency, ...` up to `end_step`
    (`-1`: no end).
    """

    def __call__(self, step):
        raise NotImplementedError

    def get_config(self):
        raise NotImplementedError

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    @staticmethod
    def should_prune_in_step(step, begin_step, end_step, frequency):
        in_range = step >= begin_step and (end_step == -1 or step <= end_step)
        return bool(in_range and (step - begin_step) % frequency == 0)

    def _check_steps(self, begin_step, end_step, frequency, open_end):
        self.begin_step = _check_int("begin_step", begin_step, 0)
        if not (open_end and end_step == -1):
            self.end_step = _check_int("end_step", end_step, 0)
            if self.end_step < self.begin_step or (
                not open_end and self.end_step == self.begin_step
            ):
                relation = ">=" if open_end else ">"
                raise ValueError(
                    f"`end_step` must be {relation} `begin_step`"
                    f"{' or -1' if open_end else ''}. Received: "
                    f"begin_step={begin_step}, end_step={end_step}"
                )
        else:
            self.end_step = -1
        self.frequency = _check_int("frequency", frequency, 1)


@keras.saving.register_keras_serializable(package="keras_dynfilt")
class ConstantSparsity(PruningSchedule):
    """Prunes to a constant sparsity every `frequency` steps.

    Same behaviour as `tfmot.sparsity.keras.ConstantSparsity`, in plain
    Python: `schedule(step)` returns `(should_prune, target_sparsity)` with
    `should_prune` true at `begin_step`, `begin_step + frequency`, ... up to
    `end_step`.

    Args:
        target_sparsity: Float in [0, 1), the fraction of filters pruned.
        begin_step: Integer >= 0, the first step that prunes.
        end_step: Integer, the last step that may prune; `-1` for no end.
        frequency: Integer >= 1, prune every `frequency` steps.

    Examples:
        >>> schedule = keras_dynfilt.callbacks.ConstantSparsity(0.3, 0, -1, 100)
        >>> schedule(200)
        (True, 0.3)
    """

    def __init__(self, target_sparsity, begin_step=0, end_step=-1,
                 frequency=100):
        self.target_sparsity = _check_sparsity(
            "target_sparsity", target_sparsity
        )
        self._check_steps(begin_step, end_step, frequency, open_end=True)

    def __call__(self, step):
        step = _as_step(step)
        should = self.should_prune_in_step(
            step, self.begin_step, self.end_step, self.frequency
        )
        return should, self.target_sparsity

    def get_config(self):
        return {
            "target_sparsity": self.target_sparsity,
            "begin_step": self.begin_step,
            "end_step": self.end_step,
            "frequency": self.frequency,
        }


@keras.saving.register_keras_serializable(package="keras_dynfilt")
class PolynomialDecay(PruningSchedule):
    """Sparsity grows polynomially from `initial_` to `final_sparsity`.

    Same behaviour as `tfmot.sparsity.keras.PolynomialDecay`, in plain
    Python: at step `t` the sparsity is
    `final + (initial - final) * (1 - p) ** power` with
    `p = clip((t - begin_step) / (end_step - begin_step), 0, 1)`, and
    pruning happens every `frequency` steps between `begin_step` and
    `end_step`.

    Args:
        initial_sparsity: Float in [0, 1), the sparsity at `begin_step`.
        final_sparsity: Float in [0, 1), the sparsity from `end_step` on.
        begin_step: Integer >= 0.
        end_step: Integer > `begin_step`.
        power: Float, the polynomial's exponent (3: fast then slow).
        frequency: Integer >= 1, prune every `frequency` steps.

    Examples:
        >>> schedule = keras_dynfilt.callbacks.PolynomialDecay(0.0, 0.4, 0, 100)
        >>> schedule(100)
        (True, 0.4)
    """

    def __init__(self, initial_sparsity, final_sparsity, begin_step,
                 end_step, power=3, frequency=100):
        self.initial_sparsity = _check_sparsity(
            "initial_sparsity", initial_sparsity
        )
        self.final_sparsity = _check_sparsity("final_sparsity", final_sparsity)
        check_float(power, "power", 0.0, min_open=True)
        self.power = power
        self._check_steps(begin_step, end_step, frequency, open_end=False)

    def __call__(self, step):
        step = _as_step(step)
        should = self.should_prune_in_step(
            step, self.begin_step, self.end_step, self.frequency
        )
        p = (step - self.begin_step) / (self.end_step - self.begin_step)
        p = min(1.0, max(0.0, p))
        sparsity = self.final_sparsity + (
            self.initial_sparsity - self.final_sparsity
        ) * (1.0 - p) ** self.power
        return should, float(sparsity)

    def get_config(self):
        return {
            "initial_sparsity": self.initial_sparsity,
            "final_sparsity": self.final_sparsity,
            "begin_step": self.begin_step,
            "end_step": self.end_step,
            "power": self.power,
            "frequency": self.frequency,
        }
