"""Plots of characteristic curves (paper 001, Figs. 7-8)."""

from keras_dynfilt._plotting import pyplot_or_warn
from keras_dynfilt.cross_task.knee import KneePoint


def plot_characteristic_curves(curves, path, knees=None, title=None):
    """Saves a PNG of validation RMSE against the number of filters.

    One line per layer (paper 001, Figs. 7-8); knee points are marked.

    Args:
        curves: Dict `{layer: CharacteristicCurve}`.
        path: Output file (PNG, or any format matplotlib writes).
        knees: Optional: a dict `{layer: KneePoint or list of KneePoint}`,
            or a list of thresholds to mark on every curve.
        title: Optional figure title.

    Returns:
        `path`, or `None` when matplotlib (the `plot` extra) is not
        installed: a `UserWarning` then names the file not written.
    """
    if not isinstance(curves, dict) or not curves:
        raise ValueError(
            "`curves` must be a non-empty dict `{layer: "
            f"CharacteristicCurve}}`. Received: {curves!r}")
    plt = pyplot_or_warn(path, stacklevel=2)
    if plt is None:
        return None
    fig, ax = plt.subplots(figsize=(7, 4.5))
    markers = "ovs^D*"
    for name, curve in curves.items():
        (line,) = ax.plot(curve.n_filters, curve.rmse, label=name, lw=1.2)
        if knees is None:
            continue
        if isinstance(knees, dict):
            points = knees.get(name, [])
            points = [points] if isinstance(points, KneePoint) else points
        else:
            points = [curve.knee(t) for t in knees]
        for i, knee in enumerate(points):
            ax.plot(knee.n_filters, knee.rmse, markers[i % len(markers)],
                    color=line.get_color(), ms=6,
                    label=f"{name} knee t={knee.threshold:g}"
                    if len(curves) == 1 else None)
    if knees is not None and len(curves) > 1:
        # One legend entry per marker: which threshold it is.
        thresholds = sorted({k.threshold for v in knees.values() for k in (
            [v] if isinstance(v, KneePoint) else v)}, reverse=True) if (
            isinstance(knees, dict)) else list(knees)
        for i, t in enumerate(thresholds):
            ax.plot([], [], markers[i % len(markers)], color="gray",
                    label=f"knee t={t:g}")
    ax.set_xlabel("number of filters (non-zero lasso coefficients)")
    ax.set_ylabel("validation RMSE")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
