"""Pruning code nobody here wrote: a keras.applications network.

MobileNetV3Small (weights=None, 32x32) has every construct at once: Keras
ops on tensors (`x + 3.0`, `x * (1 / 6)` in hard-sigmoid), squeeze-and-
excitation gates, hard-swish `x * hard_sigmoid(x)`, a `Rescaling`
preprocessing layer, BN, depthwise convolutions and residual adds. The
whole of keras.applications is checked by `benchmarks/applications_check.py`
(table in docs/pruning.md).
"""

import keras
import numpy as np
import pytest

from keras_dynfilt.pruning import (
    apply_group_mask,
    compact,
    filter_groups,
    model_cost,
)
from tests.pruning.builders import max_relative_difference, randomize


@pytest.fixture(scope="module")
def mobilenet():
    keras.backend.clear_session()
    keras.utils.set_random_seed(0)
    model = keras.applications.MobileNetV3Small(
        weights=None, input_shape=(32, 32, 3), classes=10,
        classifier_activation=None,
    )
    randomize(model, seed=0)
    # Random BN statistics shrink the input-dependent signal at every BN
    # until the output is a constant; one training-mode call with momentum
    # 0 writes batch statistics instead (gamma in [0.5, 1.5], beta and
    # biases stay random), and depthwise filters get their own fan-in.
    rng = np.random.default_rng(0)
    norms = []
    for layer in model.layers:
        if isinstance(layer, keras.layers.DepthwiseConv2D):
            shape = tuple(layer.kernel.shape)
            layer.kernel.assign(rng.normal(
                0, 1 / np.sqrt(shape[0] * shape[1]), shape
            ).astype("float32"))
        if isinstance(layer, keras.layers.BatchNormalization):
            norms.append((layer, layer.momentum))
            layer.momentum = 0.0
            layer.gamma.assign(
                rng.uniform(0.5, 1.5, layer.gamma.shape).astype("float32")
            )
    model(inputs(), training=True)
    for layer, momentum in norms:
        layer.momentum = momentum
    return model


def inputs():
    x = np.random.default_rng(1).uniform(0, 255, (4, 32, 32, 3))
    return x.astype("float32")


# On JAX the eager calls of a 200-layer network compile op by op (minutes
# on this machine); the constructs themselves run on JAX in
# test_ops_nodes.py and test_random_models.py.
@pytest.mark.tensorflow
def test_mobilenet_v3_prunes_se_gates_and_compacts_exactly(mobilenet, tmp_path):
    model = mobilenet
    full = model_cost(model)
    groups = filter_groups(model, warn=False)
    # Every SE gate's expanding convolution is pruned with the main path
    # it gates (the expand convolution or the block input's producer).
    se_expand = [layer.name for layer in model.layers
                 if layer.name.endswith("squeeze_excite_conv_1")]
    assert len(se_expand) == 9
    for name in se_expand:
        group = next((g for g in groups if name in g.layers), None)
        assert group is not None, name
        assert any("squeeze_excite" not in p for p in group.layers), name
    assert groups.prunable_fraction() > 0.95
    for group in groups:  # the SFP criterion: 30% lowest L2 per group
        n = min(group.size - 1, int(group.size * 0.3))
        norms = np.linalg.norm(group.filter_weights(), axis=1)
        keep = np.ones(group.size, bool)
        keep[np.argsort(norms, kind="stable")[:n]] = False
        apply_group_mask(group, keep)
    priced = model_cost(model, compacted=True)
    small = compact(model)
    cost = model_cost(small)
    assert priced.macs == cost.macs and priced.params == small.count_params()
    assert cost.macs < 0.6 * full.macs
    x = inputs()
    masked = keras.ops.convert_to_numpy(model(x))
    found = keras.ops.convert_to_numpy(small(x))
    spread = np.abs(masked - masked.mean(0)).max() / np.abs(masked).max()
    assert spread > 0.05  # the output depends on the input
    assert max_relative_difference(masked, found) <= 1e-5
    path = str(tmp_path / "small.keras")
    small.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    reloaded = keras.ops.convert_to_numpy(loaded(x))
    assert max_relative_difference(found, reloaded) <= 1e-6
