"""The two sides of `benchmarks/torch_side_by_side.py` run the same thing.

The PyTorch twin of `resnet_cifar(shortcut="B")` must have the Keras
model's parameters and multiply-adds layer for layer, and both sides must
train with the same learning-rate curve. The model test needs PyTorch
(`make venv-torch`); it is skipped where PyTorch is not installed (CI).
"""

import keras
import numpy as np
import pytest

import keras_dynfilt
from tests.scripts import load_script


def _keras_layer_costs(model):
    cost = keras_dynfilt.pruning.model_cost(model)
    kinds = {"Conv2D": "conv", "Dense": "dense", "BatchNormalization": "bn"}
    out = []
    for layer_cost in cost.layers:
        kind = kinds.get(layer_cost.class_name)
        if kind:
            out.append((kind, layer_cost.params, layer_cost.macs))
    return cost, sorted(out)


def _torch_layer_costs(torch, module, image_shape):
    """keras-dynfilt's cost formulas applied to the PyTorch modules."""
    nn = torch.nn
    out = []

    def hook(layer, inputs, output):
        n_out = output[0].numel()  # one sample
        params = sum(p.numel() for p in layer.parameters())
        if isinstance(layer, nn.Conv2d):
            k = layer.kernel_size[0] * layer.kernel_size[1]
            macs = n_out * k * layer.in_channels // layer.groups
            out.append(("conv", params, macs))
        elif isinstance(layer, nn.Linear):
            out.append(("dense", params, layer.in_features * n_out))
        elif isinstance(layer, nn.BatchNorm2d):
            # Keras counts the moving mean and variance as parameters.
            out.append(("bn", params + 2 * layer.num_features, n_out))

    handles = [
        m.register_forward_hook(hook)
        for m in module.modules()
        if isinstance(m, (nn.Conv2d, nn.Linear, nn.BatchNorm2d))
    ]
    module.eval()
    with torch.no_grad():
        module(torch.zeros((1, image_shape[2]) + tuple(image_shape[:2])))
    for h in handles:
        h.remove()
    return sorted(out)


@pytest.mark.parametrize("depth", [20, 8])
def test_torch_twin_has_the_keras_resnets_params_and_macs(depth):
    torch = pytest.importorskip("torch")
    twin = load_script("benchmarks/side_by_side_torch.py")
    shape = (28, 28, 1)
    model = keras_dynfilt.models.resnet_cifar(
        depth, num_classes=10, input_shape=shape, shortcut="B"
    )
    module = twin.ResNetCifar(depth, num_classes=10, in_channels=1)
    cost, keras_layers = _keras_layer_costs(model)
    torch_layers = _torch_layer_costs(torch, module, shape)
    assert torch_layers == keras_layers
    assert sum(m for _, _, m in torch_layers) == cost.macs
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    assert sum(p.numel() for p in module.parameters()) == trainable
    if depth == 20:
        # Three projections (1x1 conv + BN), on the stage-2 and stage-3
        # entries and none on stage 1 (16 -> 16 at stride 1).
        shortcut_convs = [
            m for m in module.modules()
            if isinstance(m, torch.nn.Conv2d) and m.kernel_size == (1, 1)
        ]
        assert len(shortcut_convs) == 2
        assert trainable == 272_186


def test_both_sides_follow_kerass_cosine_schedule():
    common = load_script("benchmarks/side_by_side_common.py")
    schedule = keras.optimizers.schedules.CosineDecay(0.1, 1407)
    for step in (0, 1, 400, 1000, 1406, 1407):
        np.testing.assert_allclose(
            float(schedule(step)), common.cosine_lr(0.1, step, 1407),
            rtol=1e-6, atol=1e-9,
        )


def test_batch_order_is_a_function_of_seed_and_epoch():
    common = load_script("benchmarks/side_by_side_common.py")
    a = common.epoch_order(0, 1, 1000)
    np.testing.assert_array_equal(a, common.epoch_order(0, 1, 1000))
    assert sorted(a.tolist()) == list(range(1000))
    assert not np.array_equal(a, common.epoch_order(0, 2, 1000))
    assert not np.array_equal(a, common.epoch_order(1, 1, 1000))
