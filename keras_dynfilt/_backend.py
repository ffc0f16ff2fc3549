"""The one clear error for an environment without a Keras backend.

keras-dynfilt declares no backend (see pyproject.toml), and Keras imports
its backend as soon as it is imported itself: with `KERAS_BACKEND` unset it
wants TensorFlow, so a bare `pip install keras-dynfilt` would meet a
`ModuleNotFoundError: No module named 'tensorflow'` from deep inside Keras.
"""

import importlib
import importlib.util
import os

EXTRAS = ("tensorflow", "tensorflow-cpu", "jax")
# The module each Keras backend imports.
_MODULES = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}


def _install_hint():
    extras = ", ".join(f'"keras-dynfilt[{e}]"' for e in EXTRAS)
    return (
        f"Install one with the library, e.g. `pip install "
        f'"keras-dynfilt[tensorflow]"` (extras: {extras}), or point '
        "`KERAS_BACKEND` at a backend that is installed "
        "(tensorflow, jax or torch)."
    )


def _installed_backends(exclude):
    """The backend modules importable here, other than `exclude`."""
    return [
        name
        for name in ("tensorflow", "jax", "torch")
        if name != exclude and importlib.util.find_spec(name) is not None
    ]


def missing_backend_message(backend, setting, missing, installed):
    """The `ImportError` text for a Keras backend that is not installed.

    `backend` is the one Keras wants, `setting` the value of
    `KERAS_BACKEND` (None when unset: Keras then defaults to TensorFlow or
    reads ~/.keras/keras.json), `missing` the module that failed to import
    and `installed` the other backend modules that are there. When one is
    installed the first sentence says how to use it: a user who ran
    `pip install ".[jax]"` has jax, and Keras still wants TensorFlow.
    """
    where = (
        f"KERAS_BACKEND={setting}"
        if setting
        else "KERAS_BACKEND=<unset>, or ~/.keras/keras.json"
    )
    message = (
        "keras-dynfilt found no Keras backend: Keras wants the "
        f"{backend!r} backend ({where}) but `{missing}` is not installed. "
    )
    if installed:
        name = installed[0]
        message += (
            f"{name} is installed: set KERAS_BACKEND={name} "
            f"(e.g. `export KERAS_BACKEND={name}`) to use it. "
        )
    return message + _install_hint()


def require_backend():
    """Imports Keras; raises one `ImportError` naming the extras if its
    backend (or Keras itself) is missing."""
    try:
        importlib.import_module("keras")
    except ModuleNotFoundError as error:
        setting = os.environ.get("KERAS_BACKEND")
        if error.name == "keras":
            raise ImportError(
                "keras-dynfilt needs Keras 3 (`pip install keras`). "
                + _install_hint()
            ) from error
        missing = (error.name or "").split(".")[0]
        if missing in _MODULES.values():
            backend = setting or {m: b for b, m in _MODULES.items()}[missing]
            raise ImportError(
                missing_backend_message(
                    backend, setting, error.name, _installed_backends(missing)
                )
            ) from error
        raise
