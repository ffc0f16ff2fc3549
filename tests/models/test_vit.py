import keras
import numpy as np
import pytest

from keras_dynfilt.layers import ClassToken, PositionEmbedding
from keras_dynfilt.models import vit
from keras_dynfilt.pruning import filter_groups, model_cost


def test_vit_shapes_params_and_cost():
    model = vit((8, 8, 1), 3, patch_size=4, dim=8, depth=2, num_heads=2,
                mlp_dim=12)
    assert model.output_shape == (None, 3)
    tokens, dim, mlp = 5, 8, 12
    block = (
        2 * 2 * dim  # two LayerNormalizations
        + 4 * (dim * dim + dim)  # query, key, value, output projections
        + dim * mlp + mlp + mlp * dim + dim  # MLP
    )
    params = (
        16 * dim + dim  # patch embedding
        + dim + tokens * dim  # class token, position embedding
        + 2 * block + 2 * dim  # blocks, final norm
        + dim * 3 + 3  # classifier
    )
    assert model.count_params() == params
    macs = model_cost(model).macs
    attention = (
        4 * tokens * dim * dim  # query, key, value, output projections
        + 2 * tokens * tokens * dim  # logits and weighted sum, all heads
    )
    mlp_macs = 2 * tokens * dim * mlp
    norms = 5 * tokens * dim
    assert macs == (
        4 * dim * 16  # patch embedding
        + 2 * (attention + mlp_macs) + norms + dim * 3
    )


def test_vit_prunable_groups():
    model = vit((8, 8, 1), 3, patch_size=4, dim=8, depth=2, num_heads=2,
                mlp_dim=12)
    exact = {g.layers for g in filter_groups(model, warn=False)}
    assert ("block1_mlp1",) in exact and ("block1_attention",) in exact
    inexact = filter_groups(model, warn=False, exact=False)
    assert any("patch_embed" in g.layers for g in inexact)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"patch_size": 3}, "multiples of `patch_size`"),
        ({"dim": 10, "num_heads": 4}, "multiple of `num_heads`"),
        ({"depth": 0}, "`depth` must be a positive integer"),
        ({"dropout": 1.0}, "dropout"),
    ],
)
def test_vit_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        vit((8, 8, 1), 3, **{"patch_size": 4, **kwargs})


def test_token_layers_round_trip(tmp_path):
    inputs = keras.Input((4, 6))
    x = ClassToken(name="cls")(inputs)
    x = PositionEmbedding(name="pos")(x)
    model = keras.Model(inputs, x)
    for w in model.weights:
        w.assign(np.random.default_rng(0).normal(size=w.shape))
    data = np.random.default_rng(1).normal(size=(2, 4, 6)).astype("float32")
    out = keras.ops.convert_to_numpy(model(data))
    assert out.shape == (2, 5, 6)
    token = keras.ops.convert_to_numpy(model.get_layer("cls").token)[0, 0]
    pos = keras.ops.convert_to_numpy(model.get_layer("pos").embedding)
    np.testing.assert_allclose(
        out[:, 0], np.broadcast_to(token + pos[0], (2, 6)), rtol=1e-6
    )
    np.testing.assert_allclose(out[:, 1:], data + pos[1:], rtol=1e-6)
    path = tmp_path / "tokens.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(loaded(data)), out, rtol=1e-6
    )


def test_token_layers_refuse_bad_shapes():
    with pytest.raises(ValueError, match="ClassToken expects"):
        ClassToken()(keras.ops.ones((2, 3)))
    with pytest.raises(ValueError, match="PositionEmbedding expects"):
        PositionEmbedding()(keras.ops.ones((2, 3, 4, 5)))
