"""Random weights that make BatchNormalization and biases matter.

One copy, used by the pruning tests (`tests.pruning.builders.randomize`)
and by the benchmarks (`applications_check.py`, `third_party_coverage.py`,
`compaction.py`): a masked model and its compacted copy are compared on
these weights, so the draws must keep the signal alive through deep
networks (Keras's initializers leave BN at identity and biases at zero,
where a wrong bias or statistic would go unnoticed). It lives with the
tests, not in the library: it is a fixture for checking exactness, and the
benchmarks that share it run from a checkout, as the tests do (neither
ships in the wheel).
"""

import keras
import numpy as np

_DEPTHWISE = (
    keras.layers.DepthwiseConv1D,
    keras.layers.DepthwiseConv2D,
)
_SEPARABLE = (
    keras.layers.SeparableConv1D,
    keras.layers.SeparableConv2D,
)


def _depthwise_kernels(model):
    """ids of the kernels whose filters each read one input channel."""
    found, stack = set(), [model]
    while stack:
        layer = stack.pop()
        if isinstance(layer, _DEPTHWISE):
            found.add(id(layer.kernel))
        elif isinstance(layer, _SEPARABLE):
            found.add(id(layer.depthwise_kernel))
        stack.extend(getattr(layer, "layers", ()))
    return found


def randomize(model, seed=0):
    """Draws every weight at random, BN statistics included; returns `model`.

    Moving variances from U(0.5, 2), moving means from N(0, 0.5), gammas,
    betas and biases from N(0.3, 0.5), kernels from N(0, 1 / fan_in). The
    fan-in of a depthwise kernel `(k..., channels, multiplier)` is the
    kernel's window `prod(k)` (each filter reads one channel), not
    `prod(k) * channels` as for a dense or grouped kernel. Other 1-D and
    scalar weights (LayerScale, `Normalization` statistics) keep their
    values. Values are cast to each variable's dtype (float64 models too).
    """
    rng = np.random.default_rng(seed)
    depthwise = _depthwise_kernels(model)
    for w in model.weights:
        shape = tuple(w.shape)
        if "moving_variance" in w.path:
            value = rng.uniform(0.5, 2.0, shape)
        elif "moving_mean" in w.path:
            value = rng.normal(0.0, 0.5, shape)
        elif w.name in ("gamma", "beta", "bias"):
            value = rng.normal(0.3, 0.5, shape)
        elif len(shape) > 1:
            window = shape[:-2] if id(w) in depthwise else shape[:-1]
            fan_in = int(np.prod(window))
            value = rng.normal(0.0, 1.0 / np.sqrt(fan_in), shape)
        else:
            continue
        w.assign(value.astype(w.dtype))
    return model
