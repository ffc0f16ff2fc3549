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
])
def test_keras_hub_transformer_is_pruned_exactly(name, prunable, tmp_path):
    model = MODELS[name]()
    groups = filter_groups(model, warn=False)
    assert len(groups) == prunable
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        zoo.check_four(model, tmp_path, min_groups=prunable)


@pytest.mark.parametrize("name, layer, construct", [
    ("LlamaBackbone (GQA)", "LlamaTransformerDecoder",
     r"ops\.arange\(output_length"),
    ("GemmaBackbone (GQA)", "GemmaDecoderBlock", r"ops\.arange\(output_length"),
    ("SwinTransformerBackbone", "SwinTransformerBlock",
     r"ops\.shape\(windows\)\[0\] //"),
])
def test_keras_hub_decoder_refusals_name_layer_and_construct(
    name, layer, construct
):
    groups = filter_groups(MODELS[name](), warn=False)
    reasons = {b.class_name: str(b.reason) for b in groups.barriers}
    assert re.search(rf"Cannot trace layer '.*' \({layer}\)", reasons[layer])
    assert re.search(construct, reasons[layer])
