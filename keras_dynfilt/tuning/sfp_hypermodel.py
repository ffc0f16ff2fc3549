"""HyperModel for the Soft Filter Pruning rate of a user's own model."""

import inspect
import numbers

import keras

from keras_dynfilt.callbacks.soft_filter_pruning import SoftFilterPruning
from keras_dynfilt.pruning import model_cost
from keras_dynfilt.tuning.search_space import PaperHyperModel, kt


def _check_nonnegative(value, name):
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Real)
        or not value >= 0
    ):
        raise ValueError(
            f"`{name}` must be a non-negative number. Received: "
            f"{name}={value!r}"
        )
    return float(value)


class SoftFilterPruningHyperModel(PaperHyperModel):
    """Tunes Soft Filter Pruning of any model, scored on the compacted model.

    Wraps the user's model-building function and trains each trial with
    `keras_dynfilt.callbacks.SoftFilterPruning`. Searched, with the SFP
    paper's settings as defaults: `pruning_rate` in [0.1, 0.6] in steps of
    0.1 (default 0.3, the paper's rate for CIFAR ResNet-20/32/110),
    `criterion` in {l2, fpgm} (default l2, the paper's; FPGM is the
    follow-up's geometric-median criterion) and `frequency` in {1, 2, 3}
    (epochs between masks, default 1).

    After training, the final (hard) mask is applied, the masked model is
    evaluated on the validation data (it computes the same function as the
    compacted model), and `keras_dynfilt.pruning.model_cost(model,
    masks=...)` counts the multiply-adds (MACs) of the physically smaller
    model from the final masks, without building it. The trial reports
    `val_accuracy`, `macs`, `full_macs`, `flops_fraction` (compacted MACs
    / full MACs) and the objective `score` (maximised), which is one of:

    - the trade-off (default): `score = val_accuracy - flops_weight *
      flops_fraction`;
    - a hard budget, `macs_budget=N`: `score = val_accuracy` when the
      compacted model needs at most `N` MACs, else `-macs / N` (below every
      trial within the budget);
    - "the highest pruning that costs me at most N points":
      `max_accuracy_drop=d` (a fraction, 0.01 is one point) with
      `reference_accuracy` (the unpruned model's validation accuracy):
      `score = 1 - flops_fraction` (the MACs saved) when `val_accuracy >=
      reference_accuracy - d`, else `-(reference_accuracy - val_accuracy)`.

    The best-epoch checkpoint of a trial is its last epoch (the objective is
    computed after `fit`), i.e. the masked model; `tuner.get_best_models()`
    returns it at full size: compact it with
    `keras_dynfilt.pruning.compact(model)`.

    Reference:
    - [He et al., Soft Filter Pruning for Accelerating Deep Convolutional
      Neural Networks (IJCAI 2018)](https://arxiv.org/abs/1808.06866)
    - [He et al., Filter Pruning via Geometric Median for Deep Convolutional
      Neural Networks Acceleration (CVPR 2019)](
      https://arxiv.org/abs/1811.00250)

    Args:
        build_model: Callable returning a functional or Sequential Keras
            model: `build_model(hp)` when it has a required positional
            parameter (to tune its own hyperparameters as well), else
            `build_model()`. A compiled model is used as it is; an
            uncompiled one is compiled with `optimizer`, `loss` and
            `["accuracy"]`.
        flops_weight: Non-negative float, the weight of `flops_fraction` in
            the trade-off score.
        macs_budget: Optional positive number, the hard MACs budget of the
            compacted model.
        max_accuracy_drop: Optional fraction in [0, 1], the accuracy the
            user accepts to lose (with `reference_accuracy`).
        reference_accuracy: The unpruned validation accuracy, needed with
            `max_accuracy_drop`.
        optimizer: Optimizer for an uncompiled model; defaults to
            `SGD(0.1, momentum=0.9, nesterov=True)` (a fresh one per trial).
        loss: Loss for an uncompiled model; defaults to
            `SparseCategoricalCrossentropy(from_logits=True)`.
        accuracy_metric: Name of the accuracy in `model.evaluate`'s dict.
        space: Optional dict of range overrides (see `PaperHyperModel`).
        fixed: Optional dict of pinned values.
        name: Optional name; defaults to `"sfp"`.

    Examples:

    One trial by hand (a tuner calls `build` and `fit` the same way): the
    model is trained under `SoftFilterPruning`, compacted and scored.

    >>> import keras_tuner
    >>> def tiny_cnn():
    ...     inputs = keras.Input((8, 8, 1))
    ...     h = keras.layers.Conv2D(8, 3, activation="relu")(inputs)
    ...     h = keras.layers.Conv2D(8, 3, activation="relu")(h)
    ...     h = keras.layers.GlobalAveragePooling2D()(h)
    ...     return keras.Model(inputs, keras.layers.Dense(2)(h))
    >>> hypermodel = keras_dynfilt.tuning.SoftFilterPruningHyperModel(
    ...     tiny_cnn, flops_weight=0.1)
    >>> hp = keras_tuner.HyperParameters()
    >>> model = hypermodel.build(hp)
    >>> hp.values
    {'pruning_rate': 0.3, 'criterion': 'l2', 'frequency': 1}
    >>> x = np.random.default_rng(0).random((32, 8, 8, 1), "float32")
    >>> y = (x.mean(axis=(1, 2, 3)) > 0.5).astype("int32")
    >>> result = hypermodel.fit(
    ...     hp, model, x, y, validation_data=(x, y), epochs=1, verbose=0)
    >>> result["macs"], result["full_macs"], result["sparsity"]
    (7140.0, 11824.0, 0.25)
    """

    SEARCH_SPACE = {
        "pruning_rate": (
            "Float",
            {"min_value": 0.1, "max_value": 0.6, "step": 0.1,
             "default": 0.3},
        ),
        "criterion": ("Choice", {"values": ["l2", "fpgm"], "default": "l2"}),
        "frequency": ("Choice", {"values": [1, 2, 3], "default": 1}),
    }

    def __init__(
        self,
        build_model,
        flops_weight=1.0,
        macs_budget=None,
        max_accuracy_drop=None,
        reference_accuracy=None,
        optimizer=None,
        loss=None,
        accuracy_metric="accuracy",
        space=None,
        fixed=None,
        name="sfp",
    ):
        super().__init__(space=space, fixed=fixed, name=name)
        if not callable(build_model):
            raise TypeError(
                "`build_model` must be a callable returning a Keras model. "
                f"Received: build_model={build_model!r}"
            )
        self.build_model = build_model
        self.flops_weight = _check_nonnegative(flops_weight, "flops_weight")
        if macs_budget is not None and not (
            _check_nonnegative(macs_budget, "macs_budget") > 0
        ):
            raise ValueError(
                "`macs_budget` must be a positive number of multiply-adds. "
                f"Received: macs_budget={macs_budget!r}"
            )
        if max_accuracy_drop is not None:
            drop = _check_nonnegative(max_accuracy_drop, "max_accuracy_drop")
            if drop > 1 or reference_accuracy is None:
                raise ValueError(
                    "`max_accuracy_drop` is a fraction in [0, 1] (0.01 is one "
                    "point) and needs `reference_accuracy`, the unpruned "
                    "model's validation accuracy. Received: "
                    f"max_accuracy_drop={max_accuracy_drop!r}, "
                    f"reference_accuracy={reference_accuracy!r}"
                )
            _check_nonnegative(reference_accuracy, "reference_accuracy")
        if macs_budget is not None and max_accuracy_drop is not None:
            raise ValueError(
                "Pass `macs_budget` or `max_accuracy_drop`, not both. "
                f"Received: macs_budget={macs_budget!r}, "
                f"max_accuracy_drop={max_accuracy_drop!r}"
            )
        self.macs_budget = macs_budget
        self.max_accuracy_drop = max_accuracy_drop
        self.reference_accuracy = reference_accuracy
        self.optimizer = optimizer
        self.loss = loss
        self.accuracy_metric = accuracy_metric
        # `build_model(hp)` when it has a required positional parameter.
        try:
            parameters = inspect.signature(build_model).parameters.values()
        except (TypeError, ValueError):
            parameters = ()
        self._takes_hp = any(
            p.default is p.empty
            and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
            for p in parameters
        )
        self.objective = kt.Objective("score", "max")

    def build(self, hp):
        self.declare(hp)
        model = self.build_model(hp) if self._takes_hp else self.build_model()
        if not isinstance(model, keras.Model):
            raise TypeError(
                "`build_model` must return a keras.Model. Received: "
                f"{type(model).__name__}"
            )
        if not getattr(model, "compiled", False):
            optimizer = self.optimizer
            optimizer = (
                keras.optimizers.SGD(0.1, momentum=0.9, nesterov=True)
                if optimizer is None
                else keras.optimizers.deserialize(
                    keras.optimizers.serialize(optimizer)
                )
                if isinstance(optimizer, keras.optimizers.Optimizer)
                else optimizer
            )
            model.compile(
                optimizer=optimizer,
                loss=self.loss
                or keras.losses.SparseCategoricalCrossentropy(
                    from_logits=True
                ),
                metrics=["accuracy"],
            )
        return model

    def score(self, val_accuracy, macs, full_macs):
        """The objective of a trial (see the class docstring)."""
        fraction = macs / full_macs
        if self.macs_budget is not None:
            if macs <= self.macs_budget:
                return float(val_accuracy)
            return -float(macs) / float(self.macs_budget)
        if self.max_accuracy_drop is not None:
            loss = self.reference_accuracy - val_accuracy
            if loss <= self.max_accuracy_drop + 1e-12:
                return 1.0 - fraction
            return -float(loss)
        return float(val_accuracy) - self.flops_weight * fraction

    def fit(self, hp, model, *args, validation_data=None, **kwargs):
        if validation_data is None:
            raise ValueError(
                "SoftFilterPruningHyperModel scores the pruned model on "
                "`validation_data`, which is required (carve it from the "
                "training data; keep the test set for the end)."
            )
        sfp = SoftFilterPruning(
            pruning_rate=float(hp.get("pruning_rate")),
            criterion=hp.get("criterion"),
            frequency=int(hp.get("frequency")),
        )
        callbacks = [sfp, *kwargs.pop("callbacks", [])]
        history = model.fit(
            *args,
            validation_data=validation_data,
            callbacks=callbacks,
            **kwargs,
        )
        if isinstance(validation_data, (tuple, list)):
            x_val, y_val = validation_data[:2]
            evaluated = model.evaluate(
                x_val,
                y_val,
                batch_size=kwargs.get("batch_size"),
                return_dict=True,
                verbose=0,
            )
        else:
            evaluated = model.evaluate(
                validation_data, return_dict=True, verbose=0
            )
        if self.accuracy_metric not in evaluated:
            raise ValueError(
                f"`accuracy_metric` {self.accuracy_metric!r} is not among "
                f"the model's metrics {sorted(evaluated)}; compile it with "
                "metrics=['accuracy'] or pass accuracy_metric=."
            )
        accuracy = float(evaluated[self.accuracy_metric])
        full_macs = model_cost(model).macs
        # The compacted model's MACs, priced from the final masks.
        masks = {g: keep for (g, _), keep in zip(sfp.groups, sfp.masks)}
        macs = model_cost(model, masks=masks).macs
        metrics = {
            "score": self.score(accuracy, macs, full_macs),
            "val_accuracy": accuracy,
            "val_loss": float(evaluated.get("loss", float("nan"))),
            "macs": float(macs),
            "full_macs": float(full_macs),
            "flops_fraction": macs / full_macs,
            "sparsity": float(history.history.get("sparsity", [0.0])[-1]),
        }
        return metrics
