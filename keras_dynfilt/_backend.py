"""The one clear error for an environment without a Keras backend.

keras-dynfilt declares no backend (see pyproject.toml), and Keras imports
its backend as soon as it is imported itself: with `KERAS_BACKEND` unset it
wants TensorFlow, so a bare `pip install keras-dynfilt` would meet a
`ModuleNotFoundError: No module named 'tensorflow'` from deep inside Keras.
"""

import importlib
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


def require_backend():
    """Imports Keras; raises one `ImportError` naming the extras if its
    backend (or Keras itself) is missing."""
    try:
        importlib.import_module("keras")
    except ModuleNotFoundError as error:
        backend = os.environ.get("KERAS_BACKEND", "tensorflow")
        if error.name == "keras":
            raise ImportError(
                "keras-dynfilt needs Keras 3 (`pip install keras`). "
                + _install_hint()
            ) from error
        if error.name and error.name.split(".")[0] in _MODULES.values():
            raise ImportError(
                "keras-dynfilt found no Keras backend: Keras wants the "
                f"{backend!r} backend (KERAS_BACKEND="
                f"{os.environ.get('KERAS_BACKEND', '<unset>')}, or "
                f"~/.keras/keras.json) but `{error.name}` is not "
                "installed. " + _install_hint()
            ) from error
        raise
