"""keras-hub backbones built from constructors with tiny configs (never
presets): the zoo's four checks. Skipped where keras-hub is not installed
(it is optional; CI never needs it)."""

import importlib.util
import pathlib
import re
import warnings

import keras
import numpy as np
import pytest

pytest.importorskip("keras_hub")

from keras_dynfilt.pruning import compact, filter_groups  # noqa: E402
from tests.pruning import zoo  # noqa: E402


def _builders():
    path = (
        pathlib.Path(__file__).parents[2] / "benchmarks"
        / "third_party_coverage.py"
    )
    spec = importlib.util.spec_from_file_location("coverage", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.MODELS


MODELS = _builders()


@pytest.mark.parametrize("name", [
    "MobileNetBackbone (V3)", "HGNetV2Backbone", "CSPNetBackbone (dark)",
    "MobileNetImageClassifier",
    # SpatialPyramidPooling traced: the compacted model holds its parts.
    "DeepLabV3Backbone (SpatialPyramidPooling)",
    # Shared heads over two pyramid levels, Reshape((-1, 4)) anchor boxes.
    "RetinaNetObjectDetector (PredictionHead)",
])
def test_keras_hub_backbone(name, tmp_path):
    model = MODELS[name]()
    groups = filter_groups(model, warn=False)
    assert not groups.barriers
    if not name.startswith("CSPNet"):  # functional all the way down
        assert groups.traced  # keras-hub's blocks were traced
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        zoo.check_four(model, tmp_path)


def test_untraceable_third_party_layer_is_named_with_its_defect():
    # ViT's patch embedding tiles its class token by the symbolic batch
    # size (not traceable), and its config does not rebuild it.
    model = MODELS["ViTBackbone"]()
    groups = filter_groups(model, warn=False)
    assert groups.barriers[0].class_name == "ViTPatchingAndEmbedding"
    # The encoder blocks are traced: their MLPs' hidden units are groups,
    # and so are their attention heads and head dimensions.
    assert len(groups) == 6
    assert sum("/mlp/" in g.layers[0] for g in groups) == 2
    assert sum(g.layers[0].endswith("/mha") for g in groups) == 4
    with pytest.raises(ValueError, match=(
        r"cannot rebuild layer 'vit_patching_and_embedding' .*"
        r"ViTPatchingAndEmbedding\) from its own config.*defect of that "
        r"layer.*could not be traced"
    )):
        compact(model)


def test_mobilenet_v3_had_no_prunable_group_without_tracing():
    from keras_dynfilt.pruning import graph

    model = MODELS["MobileNetBackbone (V3)"]()
    assert graph.ChannelGraph(model).groups == []  # untraced: all barriers
    x = np.zeros((1, 32, 32, 3), "float32")
    assert keras.ops.shape(model(x))[-1] > 0


@pytest.mark.parametrize("name, prunable", [
    # Was KeyError 'query/kernel': `attention` holds an MHA `attention`.
    # Heads, head dimensions and MLP widths of both blocks; the class
    # token embedding and the layer scales stay barriers.
    ("DINOV2Backbone", 6),
    # Was "drop_path ... is part of a cycle"; MixFFN widths are prunable,
    # its reshapes by the symbolic batch size run with -1.
    ("MiTBackbone (SegFormer encoder)", 2),
    # Not traceable (`ops.shape(windows)[0] // n`): a rule for the block,
    # its MLP widths (heads set the head width: fixed).
    ("SwinTransformerBackbone", 2),
])
def test_keras_hub_transformer_is_pruned_exactly(name, prunable, tmp_path):
    model = MODELS[name]()
    groups = filter_groups(model, warn=False)
    assert len(groups) == prunable
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        zoo.check_four(model, tmp_path, min_groups=prunable)


@pytest.mark.parametrize("name, layer, construct", [
    ("DeiTBackbone", "DeiTEmbeddings", r"ops\.tile\(self\.class_token"),
])
def test_keras_hub_refusals_name_layer_and_construct(
    name, layer, construct
):
    groups = filter_groups(MODELS[name](), warn=False)
    reasons = {b.class_name: str(b.reason) for b in groups.barriers}
    assert re.search(rf"Cannot trace layer '.*' \({layer}\)", reasons[layer])
    assert re.search(construct, reasons[layer])


def _gemma_inputs(seed=1, length=8):
    rng = np.random.default_rng(seed)
    mask = np.ones((2, length), "int32")
    mask[1, length - 3:] = 0  # the second sequence is padded
    return {
        "token_ids": rng.integers(0, 100, (2, length)).astype("int32"),
        "padding_mask": mask,
    }


def test_gemma_decoder_heads_and_mlp_widths_are_pruned_exactly(tmp_path):
    from keras_dynfilt.pruning import model_cost
    from tests.random_weights import randomize

    model = MODELS["GemmaBackbone (GQA)"]()
    randomize(model, 0)
    x = _gemma_inputs()
    groups = filter_groups(model, warn=False)
    # Per block: its 2 key/value heads (each with its 2 query heads), its
    # 32 MLP units; the residual stream is held (RMSNorm, exact mode).
    assert sorted(g.size for g in groups) == [2, 2, 32, 32]
    keeps = {}
    for group in groups:
        keeps[group] = np.ones(group.size, bool)
        keeps[group][: group.size // 2] = False
    small, _ = zoo.mask_and_compact(model, x, keeps)
    block = small.get_layer("decoder_block_0")
    assert (block.num_key_value_heads, block.num_query_heads) == (1, 2)
    assert block.intermediate_dim == 32
    shape = [(8,), (8,)]
    priced = model_cost(model, input_shape=shape, compacted=True, warn=False)
    actual = model_cost(small, input_shape=shape, warn=False)
    assert priced.macs == actual.macs < model_cost(
        model, input_shape=shape, warn=False).macs
    path = tmp_path / "gemma.keras"
    small.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(loaded(x)),
        keras.ops.convert_to_numpy(small(x)), rtol=1e-6, atol=1e-6,
    )


def test_llama_mlp_widths_found_and_its_config_defect_named():
    model = MODELS["LlamaBackbone (GQA)"]()
    groups = filter_groups(model, warn=False)
    # MLP widths only: Llama's head_dim is hidden_dim // num_query_heads.
    assert [g.size for g in groups] == [64, 64]
    with pytest.raises(ValueError, match=(
        r"cannot rebuild layer 'transformer_layer_0' .*LlamaTransformerDecoder"
        r".*rope_scaling_factor.*defect of that layer"
    )):
        compact(model)
