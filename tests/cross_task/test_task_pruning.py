import keras
import numpy as np
import pytest

from keras_dynfilt import cross_task
from keras_dynfilt.cross_task._graph import probe_points
from keras_dynfilt.models import light_cnn, resnet_cifar
from keras_dynfilt.pruning import model_cost

L = keras.layers


def fake_curve(keep):
    """A two-point curve whose knee (any t) keeps exactly `keep`."""
    keep = np.asarray(keep, bool)
    coefs = np.zeros((2, len(keep)))
    coefs[1, keep] = 0.5
    return cross_task.CharacteristicCurve(
        [1.0, 0.1], coefs, [0, keep.sum()], [1.0, 0.0], [1.0, 0.0])


def curves_for(model, drop, layers=None):
    """`drop`: `{layer: channels the knee drops}` (others keep all)."""
    curves = {}
    for name, probe in probe_points(model, layers).items():
        keep = np.ones(probe.tensor.shape[-1], bool)
        keep[list(drop.get(name, ()))] = False
        curves[name] = fake_curve(keep)
    return curves


def kernel(model, name):
    return model.get_layer(name).get_weights()[0]


@pytest.fixture(scope="module")
def vgg():
    inputs = keras.Input((8, 8, 3))
    x = inputs
    for i, width in enumerate((6, 8, 10), start=1):
        x = L.Conv2D(width, 3, padding="same", name=f"conv{i}")(x)
        x = L.BatchNormalization(name=f"bn{i}")(x)
        x = L.ReLU(name=f"relu{i}")(x)
        if i < 3:
            x = L.MaxPooling2D(name=f"pool{i}")(x)
    x = L.Flatten(name="flatten")(x)
    x = L.Dense(64, activation="relu", name="fc")(x)
    return keras.Model(inputs, L.Dense(3, name="logits")(x), name="vgg")


def test_vgg_keeps_knee_filters_and_drops_the_top(vgg):
    drop = {"conv1": [0, 4], "conv2": [1, 2, 3, 7]}
    pruned = cross_task.prune_for_task(vgg, curves_for(vgg, drop),
                                       layer="conv2")
    small = pruned.model
    assert pruned.widths == {"conv1": (6, 4), "conv2": (8, 4)}
    assert pruned.kept == {"conv1": [1, 2, 3, 5], "conv2": [0, 4, 5, 6]}
    assert pruned.held == {"conv1": {}, "conv2": {}}
    assert {"conv3", "fc", "logits"} <= set(pruned.removed_layers)
    names = [layer.name for layer in small.layers]
    assert "fc" not in names and names[-2:] == ["task_pool", "task_head"]
    np.testing.assert_array_equal(kernel(small, "conv1"),
                                  kernel(vgg, "conv1")[..., [1, 2, 3, 5]])
    np.testing.assert_array_equal(
        kernel(small, "conv2"),
        kernel(vgg, "conv2")[:, :, [1, 2, 3, 5]][..., [0, 4, 5, 6]])
    assert small.output_shape == (None, 1)
    assert pruned.cost_before.params == vgg.count_params()
    assert pruned.cost_after.params == small.count_params()
    assert pruned.cost_after.macs == model_cost(small).macs
    assert 0 < pruned.macs_reduction < 1 and pruned.size_reduction > 0.9
    assert "conv2" in pruned.table() and "removed" in pruned.table()
    assert pruned.as_dict()["widths"]["conv1"] == [6, 4]
    # The original model is left as it was.
    assert vgg.get_layer("conv1").filters == 6


def test_light_cnn_mfm_channel_keeps_both_producer_filters():
    model = light_cnn((8, 8, 1), 4, width_multiplier=0.25)
    drop = {"conv1_conv": [0, 5, 7], "group1_a_conv": [2]}
    pruned = cross_task.prune_for_task(
        model, curves_for(model, drop), layer="group1_b_conv")
    n = model.get_layer("conv1_conv").filters // 2
    kept = [k for k in range(n) if k not in drop["conv1_conv"]]
    assert pruned.kept["conv1_conv"] == kept
    # Conv width = 2 x kept MFM channels; filters k and k + N/2.
    assert pruned.widths["conv1_conv"] == (2 * n, 2 * len(kept))
    assert pruned.widths["group1_a_conv"] == (2 * n, 2 * (n - 1))
    np.testing.assert_array_equal(
        kernel(pruned.model, "conv1_conv"),
        kernel(model, "conv1_conv")[..., kept + [k + n for k in kept]])
    assert "group2_a_conv" in pruned.removed_layers


def test_resnet20_option_a_streams_keep_or_drop_whole_units():
    model = resnet_cifar(20, 4, (8, 8, 3), shortcut="A")
    streams = ["conv1"] + [f"stage{s}_block{b}_conv2"
                           for s in (1, 2, 3) for b in (1, 2, 3)]
    # Channel 3 of stage 1 runs through the padded shortcuts into stages 2
    # and 3: dropped only when every probe of the stream drops it.
    # Channel 20 exists from stage 2 on (zero-padded in stage 1's
    # shortcut). Channel 5 is dropped by one probe only: held.
    drop = {name: [3] + ([20] if name.startswith(("stage2", "stage3"))
                         else []) for name in streams}
    drop["stage1_block2_conv2"] = [3, 5]
    drop["stage2_block1_conv1"] = [0, 1]
    pruned = cross_task.prune_for_task(model, curves_for(model, drop),
                                       layer="stage3_block3_conv2")
    for name in streams:
        before, after = pruned.widths[name]
        assert after == before - (1 if name.startswith(("conv1", "stage1"))
                                  else 2), name
    assert pruned.widths["stage2_block1_conv1"] == (32, 30)
    assert pruned.widths["stage1_block1_conv1"] == (16, 16)
    assert pruned.held["stage1_block2_conv2"] == {
        5: "kept by another probe of the same coupled unit"}
    assert 5 in pruned.kept["stage1_block2_conv2"]
    assert 3 not in pruned.kept["conv1"]
    assert pruned.model.output_shape == (None, 1)


def test_channels_the_engine_holds_fixed_are_reported():
    inputs = keras.Input((6, 6, 2))
    a = L.Conv2D(4, 1, name="a")(inputs)
    x = L.LayerNormalization(name="ln")(a)
    b = L.Conv2D(5, 1, name="b")(x)
    model = keras.Model(inputs, L.Dense(2)(L.Flatten()(b)))
    pruned = cross_task.prune_for_task(
        model, curves_for(model, {"a": [1], "b": [0]}, ["a", "b"]),
        layer="b")
    assert pruned.widths == {"a": (4, 4), "b": (5, 4)}
    assert list(pruned.held["a"]) == [1]
    assert "ln" in pruned.held["a"][1]


@pytest.fixture(scope="module")
def two_channel_task():
    """A network whose task lives in channels 1 and 4 of `conv`."""
    rng = np.random.default_rng(3)
    inputs = keras.Input((4, 4, 6))
    x = L.Conv2D(6, 1, name="conv")(inputs)
    x = L.ReLU(name="relu")(x)
    x = L.Conv2D(5, 3, padding="same", name="conv2")(x)
    x = L.ReLU(name="relu2")(x)
    outputs = L.Dense(3, name="out")(L.GlobalAveragePooling2D()(x))
    model = keras.Model(inputs, outputs, name="two_channel")
    model.get_layer("conv").set_weights(
        [np.eye(6, dtype="float32")[None, None], np.zeros(6, "float32")])
    x = rng.uniform(0, 1, (500, 4, 4, 6)).astype("float32")
    pooled = x.mean(axis=(1, 2))
    y = 3 * pooled[:, 1] - 2 * pooled[:, 4] + 0.01 * rng.normal(size=500)
    acts = cross_task.pooled_activations(model, (x, y), batch_size=128)
    f = acts.features
    curves = {name: cross_task.characteristic_curve(
        f[name][:350], y[:350], f[name][350:], y[350:], n_lambdas=60)
        for name in f}
    return model, curves, x, y, pooled


def test_two_channel_task_prunes_to_them_with_an_ols_head(two_channel_task):
    from sklearn.linear_model import LinearRegression

    model, curves, x, y, pooled = two_channel_task
    pruned = cross_task.prune_for_task(model, curves,
                                       refit=(x[:350], y[:350]))
    assert pruned.best_layer == "conv"
    assert pruned.kept["conv"] == [1, 4]
    assert pruned.model.get_layer("conv").filters == 2
    assert "conv2" in pruned.removed_layers
    ols = LinearRegression().fit(pooled[:350][:, [1, 4]], y[:350])
    np.testing.assert_allclose(
        pruned.model.predict(x[350:], verbose=0).ravel(),
        ols.predict(pooled[350:][:, [1, 4]]), rtol=1e-4, atol=1e-5)
    # Without a refit the head is the knee's lasso fit.
    lasso = cross_task.prune_for_task(model, curves)
    index = curves["conv"].knee().index
    np.testing.assert_allclose(
        lasso.model.predict(x[350:], verbose=0).ravel(),
        curves["conv"].predict(pooled[350:], index), rtol=1e-4, atol=1e-5)


def test_categorical_refit_is_a_standardised_logistic_regression(
        two_channel_task):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    model, _, x, y, pooled = two_channel_task
    labels = np.digitize(y, np.quantile(y, [1 / 3, 2 / 3]))
    one_hot = np.eye(3)[labels]
    curve = cross_task.characteristic_curve(
        pooled[:350], one_hot[:350], pooled[350:], one_hot[350:],
        n_lambdas=30)
    pruned = cross_task.prune_for_task(
        model, {"conv": curve}, task="categorical",
        refit=(x[:350], labels[:350]))
    kept = pruned.kept["conv"]
    assert pruned.model.output_shape == (None, 3)
    reference = make_pipeline(
        StandardScaler(), LogisticRegression(max_iter=2000)).fit(
        pooled[:350][:, kept], labels[:350])
    np.testing.assert_allclose(
        pruned.model.predict(x[350:], verbose=0),
        reference.decision_function(pooled[350:][:, kept]),
        rtol=1e-3, atol=1e-3)


def test_keras_round_trip_safe_mode(two_channel_task, tmp_path):
    model, curves, x, y, _ = two_channel_task
    pruned = cross_task.prune_for_task(model, curves, threshold=0.1)
    path = tmp_path / "task.keras"
    pruned.model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    np.testing.assert_allclose(loaded.predict(x[:16], verbose=0),
                               pruned.model.predict(x[:16], verbose=0),
                               rtol=1e-6, atol=1e-6)


def test_bad_inputs(two_channel_task):
    model, curves, *_ = two_channel_task
    with pytest.raises(ValueError, match="`threshold` must be a number"):
        cross_task.prune_for_task(model, curves, threshold=2)
    with pytest.raises(ValueError, match="`task` must be one of"):
        cross_task.prune_for_task(model, curves, task="pose")
    with pytest.raises(ValueError, match="not a layer of model"):
        cross_task.prune_for_task(model, {"nope": curves["conv"]})
    with pytest.raises(ValueError, match="`layer` must be one of"):
        cross_task.prune_for_task(model, curves, layer="out")
    with pytest.raises(ValueError, match="has 6 channels but"):
        cross_task.prune_for_task(model, {"conv2": curves["conv"]})
    with pytest.raises(ValueError, match="non-empty dict"):
        cross_task.prune_for_task(model, {})
