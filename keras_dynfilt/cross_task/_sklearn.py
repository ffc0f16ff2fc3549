"""scikit-learn, imported only when a probe or a curve is fitted."""

import importlib

INSTALL_HINT = (
    "keras_dynfilt.cross_task needs scikit-learn. Install it with "
    "`pip install 'keras-dynfilt[sklearn]'` (or `pip install scikit-learn`)."
)


def sklearn_module(name):
    """Imports `sklearn.<name>`, or raises an ImportError naming the extra."""
    try:
        return importlib.import_module(f"sklearn.{name}")
    except ImportError as error:
        raise ImportError(f"{INSTALL_HINT} ({error})") from error
