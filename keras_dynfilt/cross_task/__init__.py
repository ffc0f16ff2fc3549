"""Cross-task transfer and task-specific pruning (paper 001).

How well a trained ("primary") network's filters serve another
("satellite") task, without fine-tuning: linear probes on globally average
pooled activations (`pooled_activations`, `linear_transfer`), lasso
characteristic curves and their knee points (`characteristic_curve`,
`knee_point`), and a physically smaller network for the task
(`prune_for_task`, built on `keras_dynfilt.pruning.compact`).

scikit-learn (the `sklearn` extra) is imported only when a probe or a curve
is fitted, matplotlib (the `plot` extra) only when plotting; importing
`keras_dynfilt` does not import this package.
"""

from keras_dynfilt.cross_task.activations import (
    PooledActivations,
    pooled_activations,
)
from keras_dynfilt.cross_task.curves import (
    CharacteristicCurve,
    characteristic_curve,
)
from keras_dynfilt.cross_task.knee import KneePoint, knee_point
from keras_dynfilt.cross_task.plotting import plot_characteristic_curves
from keras_dynfilt.cross_task.probes import (
    TransferResult,
    best_threshold,
    linear_transfer,
)
from keras_dynfilt.cross_task.task_pruning import (
    TaskPruning,
    prune_for_task,
    refit_head,
)

__all__ = [
    "CharacteristicCurve",
    "KneePoint",
    "PooledActivations",
    "TaskPruning",
    "TransferResult",
    "best_threshold",
    "characteristic_curve",
    "knee_point",
    "linear_transfer",
    "plot_characteristic_curves",
    "pooled_activations",
    "prune_for_task",
    "refit_head",
]
