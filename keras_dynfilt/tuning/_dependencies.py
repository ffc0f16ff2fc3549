"""The optional dependencies of `keras_dynfilt.tuning`, checked up front."""

import importlib

import keras

INSTALL_HINT = 'pip install "keras-dynfilt[tuner]"'


def require_keras_tuner():
    """Imports and returns `keras_tuner`, or raises a clear `ImportError`."""
    try:
        return importlib.import_module("keras_tuner")
    except ImportError as error:
        raise ImportError(
            "keras_dynfilt.tuning needs KerasTuner, which is not installed "
            f"({error}). Install the `tuner` extra: {INSTALL_HINT}"
        ) from error


def check_tensorboard():
    """Raises a clear `ImportError` if KerasTuner's trials would all fail.

    On the TensorFlow backend KerasTuner imports
    `tensorboard.plugins.hparams` at the start of every trial; without
    TensorBoard every trial fails with that `ImportError` and a search of
    fewer trials than `max_consecutive_failed_trials` returns as if nothing
    happened. Other backends do not import it.
    """
    if keras.backend.backend() != "tensorflow":
        return
    try:
        importlib.import_module("tensorboard.plugins.hparams.api")
    except ImportError as error:
        raise ImportError(
            "KerasTuner on the TensorFlow backend imports "
            "`tensorboard.plugins.hparams` in every trial, and TensorBoard "
            f"is not installed ({error}); every trial would fail. Install "
            f"the `tuner` extra, which includes it: {INSTALL_HINT}"
        ) from error
