"""HyperModel for NDDR-CNN (Gao et al.)."""

import keras
import numpy as np

from keras_dynfilt._validation import check_image_shape, check_num_classes
from keras_dynfilt.models.nddr_network import conv_stage, nddr_network
from keras_dynfilt.optimizers.lr_multiplier import LearningRateMultiplier
from keras_dynfilt.tuning._data import map_training_data, map_validation_data
from keras_dynfilt.tuning.search_space import PaperHyperModel, kt


class _MeanValidationAccuracy(keras.callbacks.Callback):
    """Writes `val_mean_accuracy` (mean over the tasks) into the logs."""

    def __init__(self, task_names):
        super().__init__()
        self.task_names = list(task_names)

    def on_epoch_end(self, epoch, logs=None):
        if logs is None:
            return
        keys = [f"val_{task}_accuracy" for task in self.task_names]
        if all(key in logs for key in keys):
            logs["val_mean_accuracy"] = float(
                np.mean([float(logs[key]) for key in keys])
            )


class NDDRHyperModel(PaperHyperModel):
    """Tunes an NDDR-CNN (`keras_dynfilt.models.nddr_network`).

    K task networks of conv-BN-ReLU-pool stages (`widths`), fused by an
    `NDDR` layer after every stage, one global-pooling + dense head per
    task, trained with momentum SGD (`learning_rate`, momentum 0.9) wrapped
    in `keras_dynfilt.optimizers.LearningRateMultiplier`. Searched, with
    the paper's settings as defaults:

    - `init` in {diagonal, xavier} (default diagonal);
    - `nddr_alpha` in {1.0, 0.9, 0.8, 0.7, 0.6, 0.5} with `beta = 1 -
      alpha` (the paper's ablation of the diagonal initialisation; default
      (0.9, 0.1)); only active for the diagonal initialisation;
    - `lr_multiplier` in {1, 10, 100, 1000}: the NDDR layers' learning rate
      over the base rate (default 100);
    - `weight_decay` on the NDDR kernels, log scale in [1e-5, 1e-2]
      (default 5e-4, the reference's; applied as `L2(weight_decay / 2)`,
      see `keras_dynfilt.layers.NDDR`).

    `fit` takes ordinary classification data with one label array per
    task: `y` as a list of K integer arrays, a dict keyed by task name, or
    an integer array of shape `(n, K)`. The objective,
    `val_mean_accuracy` (maximised), is the mean of the tasks' validation
    accuracies.

    Reference:
    - [Gao et al., NDDR-CNN: Layerwise Feature Fusing in Multi-Task CNNs by
      Neural Discriminative Dimensionality Reduction (CVPR
      2019)](https://arxiv.org/abs/1801.08297)

    Args:
        input_shape: Tuple `(height, width, channels)`.
        task_classes: Sequence of K >= 2 integers, the classes of each task.
        widths: Stage widths.
        learning_rate: Base SGD learning rate (not tuned).
        task_names: Optional K output names; defaults to `task_0`, ...
        space: Optional dict of range overrides (see `PaperHyperModel`).
        fixed: Optional dict of pinned values.
        name: Optional name; defaults to `"nddr"`.

    Examples:

    >>> import keras_tuner
    >>> hypermodel = keras_dynfilt.tuning.NDDRHyperModel(
    ...     (8, 8, 1), (3, 2), widths=(4, 8))
    >>> hypermodel.paper_defaults()
    {'init': 'diagonal', 'nddr_alpha': 0.9, 'lr_multiplier': 100.0, \
'weight_decay': 0.0005}
    >>> model = hypermodel.build(keras_tuner.HyperParameters())
    >>> nddr = model.get_layer("nddr_1")
    >>> nddr.alpha, nddr.beta, nddr.lr_multiplier
    (0.9, 0.1, 100.0)

    A search with it: `keras_dynfilt.tuning.make_tuner`.
    """

    SEARCH_SPACE = {
        "init": ("Choice", {"values": ["diagonal", "xavier"],
                            "default": "diagonal"}),
        "nddr_alpha": (
            "Choice",
            {"values": [1.0, 0.9, 0.8, 0.7, 0.6, 0.5], "default": 0.9},
        ),
        "lr_multiplier": (
            "Choice",
            {"values": [1.0, 10.0, 100.0, 1000.0], "default": 100.0},
        ),
        "weight_decay": (
            "Float",
            {
                "min_value": 1e-5,
                "max_value": 1e-2,
                "sampling": "log",
                "default": 5e-4,
            },
        ),
    }

    def __init__(
        self,
        input_shape,
        task_classes,
        widths=(16, 32, 64),
        learning_rate=0.02,
        task_names=None,
        space=None,
        fixed=None,
        name="nddr",
    ):
        super().__init__(space=space, fixed=fixed, name=name)
        self.input_shape = check_image_shape(input_shape)
        try:
            task_classes = [check_num_classes(k) for k in task_classes]
        except (TypeError, ValueError):
            raise ValueError(
                "`task_classes` must be a sequence of K >= 2 integers >= 2 "
                f"(the classes of each task). Received: {task_classes!r}"
            ) from None
        if len(task_classes) < 2:
            raise ValueError(
                "`task_classes` must name at least 2 tasks (NDDR fuses K >= "
                f"2 task networks). Received: task_classes={task_classes!r}"
            )
        self.task_classes = task_classes
        self.task_names = list(
            task_names or [f"task_{k}" for k in range(len(task_classes))]
        )
        if len(self.task_names) != len(task_classes):
            raise ValueError(
                f"`task_names` must have {len(task_classes)} names. "
                f"Received: task_names={task_names!r}"
            )
        self.widths = tuple(widths)
        self.learning_rate = learning_rate
        self.objective = kt.Objective("val_mean_accuracy", "max")

    def build(self, hp):
        init = self.hyperparameter(hp, "init")
        nddr_kwargs = {"init": init}
        with hp.conditional_scope("init", ["diagonal"]):
            # None (inactive) for the Xavier initialisation.
            alpha = self.hyperparameter(hp, "nddr_alpha")
        if init == "diagonal":
            nddr_kwargs.update(alpha=alpha, beta=round(1.0 - alpha, 6))
        values = self.declare(hp, ["lr_multiplier", "weight_decay"])
        nddr_kwargs.update(
            lr_multiplier=values["lr_multiplier"],
            kernel_regularizer=keras.regularizers.L2(
                values["weight_decay"] / 2
            ),
        )
        stages = [
            conv_stage(w, batch_norm_momentum=0.9, name=f"stage{s + 1}")
            for s, w in enumerate(self.widths)
        ]
        heads = [
            keras.Sequential(
                [keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(n)],
                name=f"head_{task}",
            )
            for task, n in zip(self.task_names, self.task_classes)
        ]
        model = nddr_network(
            self.input_shape,
            stages,
            heads,
            nddr_kwargs=nddr_kwargs,
            task_names=self.task_names,
        )
        model.compile(
            optimizer=LearningRateMultiplier(
                keras.optimizers.SGD(self.learning_rate, momentum=0.9)
            ),
            loss={
                task: keras.losses.SparseCategoricalCrossentropy(
                    from_logits=True
                )
                for task in self.task_names
            },
            metrics={task: ["accuracy"] for task in self.task_names},
        )
        return model

    def _targets(self, images, labels):
        names = self.task_names
        if isinstance(labels, dict):
            missing = sorted(set(names) - set(labels))
            if missing:
                raise ValueError(
                    f"NDDRHyperModel: `y` has no labels for tasks {missing}. "
                    f"Expected keys {names}. Received: {sorted(labels)}"
                )
            return images, {task: labels[task] for task in names}
        if isinstance(labels, (list, tuple)):
            if len(labels) != len(names):
                raise ValueError(
                    f"NDDRHyperModel: `y` must hold {len(names)} label "
                    f"arrays, one per task. Received: {len(labels)}"
                )
            return images, dict(zip(names, labels))
        shape = tuple(labels.shape)
        if len(shape) != 2 or shape[1] != len(names):
            raise ValueError(
                f"NDDRHyperModel: `y` must be a list of {len(names)} label "
                f"arrays, a dict keyed by {names}, or an array of shape "
                f"(n, {len(names)}). Received: an array of shape {shape}"
            )
        return images, {task: labels[:, k] for k, task in enumerate(names)}

    def fit(self, hp, model, x=None, y=None, validation_data=None, **kwargs):
        owner = type(self).__name__
        x, y = map_training_data(x, y, self._targets, owner)
        validation_data = map_validation_data(
            validation_data, self._targets, owner
        )
        callbacks = [
            _MeanValidationAccuracy(self.task_names),
            *kwargs.pop("callbacks", []),
        ]
        return model.fit(
            x,
            y,
            validation_data=validation_data,
            callbacks=callbacks,
            **kwargs,
        )
