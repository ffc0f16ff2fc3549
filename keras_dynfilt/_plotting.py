"""matplotlib (the `plot` extra) for the library's PNGs, or a warning."""

import warnings


def pyplot_or_warn(path, stacklevel=3):
    """`matplotlib.pyplot` on the Agg backend, or `None` after a warning.

    A PNG skipped without a word looks like a bug: the warning names the
    file that is not written and the extra that writes it.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # matplotlib is the `plot` extra
        warnings.warn(
            f"matplotlib is not installed: {path} is not written. Install "
            "the `plot` extra: pip install 'keras-dynfilt[plot]'",
            stacklevel=stacklevel + 1,
        )
        return None
    return plt
