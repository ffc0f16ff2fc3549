"""Learning-curve plots of a run (matplotlib, the `plot` extra)."""

import numpy as np

from keras_dynfilt._plotting import pyplot_or_warn


def plot_history(history, path, title=None):
    """Saves a PNG of every metric of a Keras history dict, train vs val."""
    plt = pyplot_or_warn(path, stacklevel=2)
    if plt is None:
        return None
    from matplotlib.ticker import MaxNLocator

    names = [k for k in history if not k.startswith("val_")]
    fig, axes = plt.subplots(
        1, len(names), figsize=(4 * len(names), 3.2), squeeze=False
    )
    for ax, name in zip(axes[0], names):
        epochs = np.arange(1, len(history[name]) + 1)
        ax.plot(epochs, history[name], marker="o", label="train")
        val = history.get(f"val_{name}")
        if val:
            # With `validation_freq=k` there are fewer validation points:
            # they belong to every k-th epoch, ending at the last one.
            step = max(1, len(epochs) // len(val))
            val_epochs = epochs[step - 1 :: step][: len(val)]
            ax.plot(val_epochs, val, marker="o", label="test")
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(name)
        ax.grid(alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
