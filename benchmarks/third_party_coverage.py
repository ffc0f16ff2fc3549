"""Pruning coverage over models nobody here wrote (keras-hub backbones).

Builds tiny keras-hub backbones from their constructors (never presets, no
download), and for each runs the four checks of the zoo: prunable groups
found, masked == compacted, fewer MACs and parameters, `.keras` reload with
`safe_mode=True`. Prints a table and writes JSON.

    PYTHONPATH=. python benchmarks/third_party_coverage.py \
        --out benchmarks/results/third_party_coverage.json

Only some models, their rows replacing theirs in an existing JSON:

    PYTHONPATH=. python benchmarks/third_party_coverage.py --merge \
        --out benchmarks/results/third_party_coverage.json \
        --models DeiTBackbone "LlamaBackbone (GQA)"

keras-hub is optional (never needed by the library or CI): install it with
`pip install --no-deps keras-hub` plus `regex` and `tokenizers`.
"""

import argparse
import json
import os
import sys
import tempfile
import time
import traceback
import warnings

import keras
import numpy as np

from keras_dynfilt.pruning import compact, filter_groups, model_cost

# The random weights of the pruning tests (one copy, in tests/, with the
# depthwise fan-in right): this script runs from a checkout, as they do.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from tests.random_weights import randomize  # noqa: E402


def _mobilenet():
    from keras_hub.models import MobileNetBackbone

    return MobileNetBackbone(
        stackwise_expansion=[[16, 24], [32, 48]],
        stackwise_num_blocks=[2, 2],
        stackwise_num_filters=[[8, 8], [16, 16]],
        stackwise_kernel_size=[[3, 3], [5, 5]],
        stackwise_num_strides=[[2, 1], [2, 1]],
        stackwise_se_ratio=[[None, None], [0.25, 0.25]],
        stackwise_activation=[["relu", "relu"], ["hard_swish", "hard_swish"]],
        stackwise_padding=[[1, 1], [2, 2]],
        output_num_filters=32,
        depthwise_filters=8,
        depthwise_stride=2,
        depthwise_residual=False,
        last_layer_filter=48,
        squeeze_and_excite=0.5,
        image_shape=(32, 32, 3),
        input_num_filters=8,
    )


def _resnet():
    from keras_hub.models import ResNetBackbone

    return ResNetBackbone(
        input_conv_filters=[64],
        input_conv_kernel_sizes=[3],
        stackwise_num_filters=[64, 32],  # keras-hub requires 64 first
        stackwise_num_blocks=[1, 1],
        stackwise_num_strides=[1, 2],
        block_type="basic_block",
        image_shape=(32, 32, 3),
    )


def _hgnetv2():
    from keras_hub.models import HGNetV2Backbone

    return HGNetV2Backbone(
        depths=[1, 1],
        embedding_size=8,
        hidden_sizes=[16, 32],
        stem_channels=[3, 8, 8],
        hidden_act="relu",
        use_learnable_affine_block=False,
        stackwise_stage_filters=[
            [8, 8, 16, 1, 2, 3],
            [16, 8, 32, 1, 2, 3],
        ],
        apply_downsample=[False, True],
        use_lightweight_conv_block=[False, True],
        image_shape=(32, 32, 3),
    )


def _cspnet():
    from keras_hub.models import CSPNetBackbone

    return CSPNetBackbone(
        stem_filters=8,
        stem_kernel_size=3,
        stem_strides=2,
        stackwise_depth=[1, 1],
        stackwise_strides=[2, 2],
        stackwise_num_filters=[16, 32],
        block_type="dark_block",
        stage_type="dark",  # CSPDarkNet-style stages
        image_shape=(32, 32, 3),
    )


def _vit():
    from keras_hub.models import ViTBackbone

    return ViTBackbone(
        image_shape=(16, 16, 3),
        patch_size=4,
        num_layers=2,
        num_heads=2,
        hidden_dim=16,
        mlp_dim=32,
    )


def _mobilenet_classifier():
    from keras_hub.models import MobileNetImageClassifier

    return MobileNetImageClassifier(
        backbone=_mobilenet(), num_classes=3, num_features=16
    )


def _deeplab():
    from keras_hub.models import DeepLabV3Backbone, ResNetBackbone

    encoder = ResNetBackbone(
        input_conv_filters=[64],
        input_conv_kernel_sizes=[3],
        stackwise_num_filters=[64, 32],
        stackwise_num_blocks=[1, 1],
        stackwise_num_strides=[1, 2],
        block_type="basic_block",
        image_shape=(32, 32, 3),
    )
    return DeepLabV3Backbone(
        image_encoder=encoder,
        spatial_pyramid_pooling_key="P3",
        upsampling_size=2,
        dilation_rates=[1, 2],
        low_level_feature_key="P2",
        projection_filters=8,
        image_shape=(32, 32, 3),
    )


def _retinanet():
    from keras_hub.models import (
        ResNetBackbone,
        RetinaNetBackbone,
        RetinaNetObjectDetector,
    )

    encoder = ResNetBackbone(
        input_conv_filters=[64],
        input_conv_kernel_sizes=[3],
        stackwise_num_filters=[64, 32, 32],
        stackwise_num_blocks=[1, 1, 1],
        stackwise_num_strides=[1, 2, 2],
        block_type="basic_block",
        image_shape=(64, 64, 3),
    )
    backbone = RetinaNetBackbone(
        image_encoder=encoder, min_level=3, max_level=4, use_p5=False,
        image_shape=(64, 64, 3),
    )
    return RetinaNetObjectDetector(
        backbone=backbone, num_classes=3, pre_logits_num_conv_layers=1
    )


def _deit():
    from keras_hub.models import DeiTBackbone

    return DeiTBackbone(
        image_shape=(16, 16, 3), patch_size=4, num_layers=2, num_heads=2,
        hidden_dim=16, intermediate_dim=32,
    )


def _dinov2():
    from keras_hub.models import DINOV2Backbone

    return DINOV2Backbone(
        patch_size=4, num_layers=2, hidden_dim=16, num_heads=2,
        intermediate_dim=32, image_shape=(16, 16, 3),
        position_embedding_shape=(16, 16, 3),
    )


def _mit():
    from keras_hub.models import MiTBackbone

    return MiTBackbone(
        layerwise_depths=[1, 1], num_layers=2, layerwise_num_heads=[1, 2],
        layerwise_sr_ratios=[2, 1], max_drop_path_rate=0.0,
        layerwise_patch_sizes=[7, 3], layerwise_strides=[4, 2],
        image_shape=(32, 32, 3), hidden_dims=[8, 16],
    )


def _swin():
    from keras_hub.models import SwinTransformerBackbone

    return SwinTransformerBackbone(
        image_shape=(32, 32, 3), embed_dim=16, depths=[1, 1],
        num_heads=[2, 2], window_size=4, patch_size=4, mlp_ratio=2.0,
        drop_path=0.0,
    )


def _llama():
    from keras_hub.models import LlamaBackbone

    return LlamaBackbone(  # grouped-query: 4 query heads share 2 kv heads
        vocabulary_size=100, num_layers=2, num_query_heads=4,
        num_key_value_heads=2, hidden_dim=32, intermediate_dim=64,
    )


def _gemma():
    from keras_hub.models import GemmaBackbone

    return GemmaBackbone(
        vocabulary_size=100, num_layers=2, num_query_heads=4,
        num_key_value_heads=2, hidden_dim=32, intermediate_dim=64,
        head_dim=8,
    )


MODELS = {
    "MobileNetBackbone (V3)": _mobilenet,
    "ResNetBackbone": _resnet,
    "HGNetV2Backbone": _hgnetv2,
    "CSPNetBackbone (dark)": _cspnet,
    "ViTBackbone": _vit,
    "MobileNetImageClassifier": _mobilenet_classifier,
    "DeepLabV3Backbone (SpatialPyramidPooling)": _deeplab,
    "RetinaNetObjectDetector (PredictionHead)": _retinanet,
    "DeiTBackbone": _deit,
    "DINOV2Backbone": _dinov2,
    "MiTBackbone (SegFormer encoder)": _mit,
    "SwinTransformerBackbone": _swin,
    "LlamaBackbone (GQA)": _llama,
    "GemmaBackbone (GQA)": _gemma,
}


def _flat(outputs):
    return np.concatenate([
        keras.ops.convert_to_numpy(o).reshape(-1).astype("float64")
        for o in keras.tree.flatten(outputs)
    ])


def _inputs(model, rng, batch=2, length=8):
    """Random inputs: images as floats, token ids below the vocabulary and
    all-ones padding masks for the decoders (sequence length `length`)."""
    named = model.input if isinstance(model.input, dict) else {
        i: t for i, t in enumerate(model.inputs)}
    out = {}
    for name, t in named.items():
        shape = (batch,) + tuple(length if d is None else d
                                 for d in t.shape[1:])
        if "int" in str(t.dtype) and "mask" in str(name):
            out[name] = np.ones(shape, "int32")
        elif "int" in str(t.dtype):
            out[name] = rng.integers(0, model.vocabulary_size, shape)
            out[name] = out[name].astype("int32")
        else:
            out[name] = rng.normal(size=shape).astype("float32")
    if isinstance(model.input, dict):
        return out
    return out[0] if len(out) == 1 else list(out.values())


def check(name, build, seed=0, fraction=0.3):
    row = {"model": name}
    try:
        _check(row, build, seed, fraction)
    except Exception as e:  # noqa: BLE001 - reported, with what came before
        traceback.print_exc()
        row["error"] = f"{type(e).__name__}: {e}"[:300]
    return row


def _check(row, build, seed, fraction):
    from keras_dynfilt.pruning import apply_group_masks

    model = build()
    randomize(model, seed)
    rng = np.random.default_rng(seed + 1)  # the masks and the input
    from keras_dynfilt.pruning.graph import ChannelGraph, is_graph_model

    if is_graph_model(model):  # what the engine found before tracing
        row["groups_untraced"] = len(ChannelGraph(model).groups)
    groups = filter_groups(model, warn=False)
    row["groups"] = len(groups)
    row["prunable_fraction"] = round(groups.prunable_fraction(), 3)
    row["traced_blocks"] = len(groups.traced)
    row["barriers"] = sorted({b.class_name for b in groups.barriers})
    row["barrier_reasons"] = {  # the engine's own words, one per class
        b.class_name: str(b.reason)[:400] for b in groups.barriers}
    if not groups:
        return row
    masks = {}
    for group in groups:
        keep = np.ones(group.size, bool)
        n = min(group.size - 1, max(1, int(group.size * fraction)))
        keep[rng.permutation(group.size)[:n]] = False
        masks[group] = keep
    apply_group_masks(masks)
    x = _inputs(model, rng)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            small = compact(model)
    except Exception as e:  # noqa: BLE001 - reported in the table
        row["error"] = f"{type(e).__name__}: {e}"[:300]
        return row
    a, b = _flat(model(x)), _flat(small(x))
    row["max_rel_diff"] = float(np.abs(a - b).max() / np.abs(a).max())
    # Decoders take any sequence length: priced at the one of `x`.
    shape = [tuple(8 if d is None else d for d in t.shape[1:])
             for t in model.inputs]
    shape = None if shape == [tuple(t.shape[1:]) for t in model.inputs] \
        else shape
    full = model_cost(model, input_shape=shape, warn=False)
    pruned = model_cost(small, input_shape=shape, warn=False)
    priced = model_cost(model, input_shape=shape, compacted=True, warn=False)
    row["priced_as_compacted"] = priced.macs == pruned.macs
    row.update(
        macs=full.macs, macs_pruned=pruned.macs,
        params=full.params, params_pruned=small.count_params(),
    )
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "small.keras")
        try:
            small.save(path)
            loaded = keras.saving.load_model(path, safe_mode=True)
            row["reload"] = bool(np.allclose(_flat(loaded(x)), b, atol=1e-6))
        except Exception as e:  # noqa: BLE001 - reported
            row["reload"] = f"{type(e).__name__}: {str(e)[:120]}"
    return row


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=None)
    parser.add_argument("--models", nargs="*", default=list(MODELS),
                        help="names from MODELS (default: all)")
    parser.add_argument("--merge", action="store_true",
                        help="keep --out's other rows, replace these")
    args = parser.parse_args()
    import keras_hub

    rows = []
    for name in args.models:
        start = time.perf_counter()
        try:
            row = check(name, MODELS[name])
        except Exception as e:  # noqa: BLE001 - reported in the table
            traceback.print_exc()
            row = {"model": name, "error": f"{type(e).__name__}: {e}"[:200]}
        row["seconds"] = round(time.perf_counter() - start, 1)
        rows.append(row)
        print(json.dumps(row), flush=True)
    print(f"\nkeras-hub {keras_hub.__version__}, keras {keras.__version__}, "
          f"backend {keras.backend.backend()}")
    header = ("model", "groups untraced", "groups", "prunable", "traced",
              "max rel diff", "MACs", "MACs pruned", "params",
              "params pruned", "reload")
    print(" | ".join(header))
    for r in rows:
        print(" | ".join(str(r.get(k, "")) for k in (
            "model", "groups_untraced", "groups", "prunable_fraction",
            "traced_blocks", "max_rel_diff", "macs", "macs_pruned", "params",
            "params_pruned", "reload",
        )))
    if args.out:
        os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
        if args.merge and os.path.exists(args.out):
            with open(args.out) as f:
                old = json.load(f)["rows"]
            new = {r["model"]: r for r in rows}
            rows = [new.pop(r["model"], r) for r in old] + list(new.values())
        with open(args.out, "w") as f:
            json.dump({
                "keras_hub": keras_hub.__version__,
                "keras": keras.__version__,
                "backend": keras.backend.backend(),
                "rows": rows,
            }, f, indent=2)


if __name__ == "__main__":
    main()
