"""What compaction changed in a model's outputs, measured on data."""

import numpy as np


class CompactionDifference:
    """The measured output difference between a model and its compacted copy.

    `compact(model, data=x)` sets it as the `compaction_difference`
    attribute of the model it returns. In the exact mode it is only float
    rounding; in the inexact mode (`exact=False`) it is what removing
    channels that feed a normalisation over channels changed.

    Attributes:
        max_abs: Float, the largest absolute difference over every output
            element of `data`.
        mean_abs: Float, the mean absolute difference.
        relative: Float, `max_abs` over the largest absolute output of
            the original model (0 when its outputs are all zero).
        normalizations: Tuple of the normalisation layers (paths) whose
            input channels were removed: the layers that make the
            compacted model inexact (empty in the exact mode).
        samples: Integer, how many samples `data` held.
    """

    def __init__(self, before, after, normalizations):
        before = [np.asarray(b, "float64") for b in before]
        after = [np.asarray(a, "float64") for a in after]
        diffs = np.concatenate(
            [np.abs(b - a).ravel() for b, a in zip(before, after)]
        )
        scale = max(float(np.abs(b).max()) for b in before)
        self.max_abs = float(diffs.max())
        self.mean_abs = float(diffs.mean())
        self.relative = self.max_abs / scale if scale > 0 else 0.0
        self.normalizations = tuple(normalizations)
        self.samples = int(len(before[0]))

    def as_dict(self):
        return {
            "max_abs": self.max_abs,
            "mean_abs": self.mean_abs,
            "relative": self.relative,
            "normalizations": list(self.normalizations),
            "samples": self.samples,
        }

    def __repr__(self):
        return (
            f"CompactionDifference(max_abs={self.max_abs:.3g}, "
            f"mean_abs={self.mean_abs:.3g}, relative={self.relative:.3g}, "
            f"normalizations={len(self.normalizations)}, "
            f"samples={self.samples})"
        )
