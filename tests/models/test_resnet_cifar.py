import keras
import numpy as np
import pytest

from keras_dynfilt.layers import ChannelPadding
from keras_dynfilt.models import resnet_cifar
from keras_dynfilt.pruning import compact, filter_groups, model_cost


def test_resnet20_hand_counts():
    model = resnet_cifar(20)
    convs = (
        3 * 3 * 3 * 16  # stem
        + 6 * 3 * 3 * 16 * 16  # stage 1
        + 3 * 3 * 16 * 32 + 5 * 3 * 3 * 32 * 32  # stage 2
        + 3 * 3 * 32 * 64 + 5 * 3 * 3 * 64 * 64  # stage 3
    )
    bn = 4 * (16 + 6 * 16 + 6 * 32 + 6 * 64)
    assert model.count_params() == convs + bn + 64 * 10 + 10 == 271_098
    b = resnet_cifar(20, shortcut="B")
    assert b.count_params() == 271_098 + 16 * 32 + 32 * 64 + 4 * (32 + 64)
    conv_macs = (
        32 * 32 * 16 * 27
        + 6 * 32 * 32 * 16 * 144
        + 16 * 16 * 32 * 144 + 5 * 16 * 16 * 32 * 288
        + 8 * 8 * 64 * 288 + 5 * 8 * 8 * 64 * 576
    )
    bn_macs = 7 * 32 * 32 * 16 + 6 * 16 * 16 * 32 + 6 * 8 * 8 * 64
    # 40.55M conv + FC multiply-adds: the usual ResNet-20 figure.
    assert conv_macs + 640 == 40_551_040
    assert model_cost(model).macs == conv_macs + 640 + bn_macs


@pytest.mark.parametrize("depth", [20, 32, 56, 110])
def test_depths_have_6n_plus_2_weighted_layers(depth):
    model = resnet_cifar(depth, num_classes=100, input_shape=(16, 16, 3))
    convs = [x for x in model.layers if isinstance(x, keras.layers.Conv2D)]
    dense = [x for x in model.layers if isinstance(x, keras.layers.Dense)]
    assert len(convs) + len(dense) == depth
    assert model.output_shape == (None, 100)


@pytest.mark.parametrize("shortcut", ["A", "B"])
def test_save_load_safe_mode_and_fit_with_xla(tmp_path, shortcut):
    model = resnet_cifar(8, 3, (8, 8, 3), shortcut=shortcut,
                         weight_decay=1e-4)
    assert any(isinstance(x, ChannelPadding) for x in model.layers) == (
        shortcut == "A"
    )
    x = np.random.default_rng(0).random((8, 8, 8, 3)).astype("float32")
    y = np.arange(8) % 3
    if shortcut == "A":  # one XLA compile is enough (CPU time is shared)
        model.compile(
            optimizer="sgd", jit_compile=True,
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        )
        history = model.fit(x, y, batch_size=4, epochs=1, verbose=0)
        assert np.isfinite(history.history["loss"][0])
    path = tmp_path / "resnet.keras"
    model.save(path)
    restored = keras.saving.load_model(path, safe_mode=True)
    np.testing.assert_allclose(
        restored.predict(x, verbose=0), model.predict(x, verbose=0),
        rtol=1e-5, atol=1e-5,
    )


def sfp_reference_reduction(model, rate):
    """The SFP reference code's analytic count (convolutions only).

    Keep fraction `1 - rate` without rounding; a block's first conv loses
    output channels only (its input is the residual stream), the second
    conv loses input and output channels; the first block of stage 1 reads
    the pruned stem. Shortcuts, BN and the classifier are not counted.
    """
    keep = 1 - rate
    full = pruned = 0
    for layer in model_cost(model).layers:
        if layer.class_name != "Conv2D" or "shortcut" in layer.name:
            continue
        if layer.name == "conv1":
            factor = keep
        elif layer.name.endswith("conv2") or layer.name.startswith(
            "stage1_block1_"
        ):
            factor = keep**2
        else:
            factor = keep
        full += layer.macs
        pruned += layer.macs * factor
    return 1 - pruned / full


def prune_every_group(model, rate, stream=True):
    masks = {}
    for group in filter_groups(model):
        keep = np.ones(group.size, bool)
        if stream or len(group.layers) == 1:
            keep[: int(group.size * rate)] = False
        masks[group] = keep
    return compact(model, masks)


@pytest.mark.parametrize(
    "depth, rate, paper",
    [(20, 0.3, 0.422), (32, 0.3, 0.415), (56, 0.4, 0.526), (110, 0.3, 0.408)],
)
def test_sfp_paper_flops_reduction(depth, rate, paper):
    model = resnet_cifar(depth)
    # The paper's figures come from this analytic count ...
    assert sfp_reference_reduction(model, rate) == pytest.approx(
        paper, abs=0.0006
    )
    if depth != 56:
        return
    # ... while a physically smaller model either prunes the residual stream
    # too (every coupled group: more than the paper) or leaves it whole.
    base = model_cost(model).macs
    everything = 1 - model_cost(prune_every_group(model, rate)).macs / base
    inner = 1 - model_cost(
        prune_every_group(model, rate, stream=False)
    ).macs / base
    assert everything == pytest.approx(0.611, abs=0.001)
    assert inner == pytest.approx(0.378, abs=0.001)


def test_option_a_compacted_model_runs():
    # Torch-Pruning merges every stage of an option-A ResNet into one group
    # and returns a model that fails at its first forward pass.
    model = resnet_cifar(20)
    small = prune_every_group(model, 0.4)
    assert small.get_layer("stage2_block1_pad").padding == (0, 10)
    x = np.random.default_rng(0).random((2, 32, 32, 3)).astype("float32")
    assert small.predict(x, verbose=0).shape == (2, 10)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"depth": 21}, r"`depth` must be an integer 6n \+ 2.*21"),
        ({"depth": 2}, r"`depth` must be.*2"),
        ({"shortcut": "C"}, r"`shortcut` must be 'A' or 'B'.*'C'"),
        ({"num_classes": 1}, r"`num_classes` must be an integer >= 2.*1"),
        ({"input_shape": (32, 32)}, r"`input_shape` must be.*\(32, 32\)"),
    ],
)
def test_invalid_arguments_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        resnet_cifar(**kwargs)
