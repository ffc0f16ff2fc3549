"""Hyperparameter tuning with KerasTuner: hypermodels, tuner, report.

`import keras_dynfilt` does not import this package; `import
keras_dynfilt.tuning` imports KerasTuner (the `tuner` extra, `pip install
"keras-dynfilt[tuner]"`) and raises an `ImportError` naming that extra when
it is missing.
"""

from keras_dynfilt.tuning.filter_generation_hypermodel import (
    FilterGenerationHyperModel,
)
from keras_dynfilt.tuning.nddr_hypermodel import NDDRHyperModel
from keras_dynfilt.tuning.report import TuningReport, tuning_report
from keras_dynfilt.tuning.search_space import PaperHyperModel
from keras_dynfilt.tuning.sfp_hypermodel import SoftFilterPruningHyperModel
from keras_dynfilt.tuning.tuner import (
    TUNERS,
    TunerMixin,
    make_tuner,
    resolve_objective,
)
from keras_dynfilt.tuning.wsoftmax_hypermodel import WSoftmaxHyperModel

__all__ = [
    "TUNERS",
    "FilterGenerationHyperModel",
    "NDDRHyperModel",
    "PaperHyperModel",
    "SoftFilterPruningHyperModel",
    "TunerMixin",
    "TuningReport",
    "WSoftmaxHyperModel",
    "make_tuner",
    "resolve_objective",
    "tuning_report",
]
