import keras
import numpy as np
import pytest

import keras_dynfilt
from keras_dynfilt.layers import NDDR, CrossStitch
from keras_dynfilt.models import conv_stage, nddr_network
from keras_dynfilt.optimizers import LearningRateMultiplier, get_lr_multiplier

INPUT = (12, 12, 1)


def _stages(batch_norm=True):
    return [conv_stage(4, batch_norm=batch_norm, name="s1"),
            conv_stage(6, batch_norm=batch_norm, name="s2"),
            conv_stage(8, pool=False, batch_norm=batch_norm, name="s3")]


def _heads():
    return [keras.Sequential([keras.layers.GlobalAveragePooling2D(),
                              keras.layers.Dense(n)], name=f"head{k}")
            for k, n in enumerate((5, 3))]


def _build(**kwargs):
    kwargs.setdefault("task_names", ["label", "angle"])
    return nddr_network(INPUT, _stages(kwargs.pop("batch_norm", True)),
                        _heads(), **kwargs)


def _images(n=4):
    return np.random.default_rng(0).uniform(size=(n, *INPUT)).astype("float32")


def _count(model, cls):
    return sum(isinstance(layer, cls) for layer in model.layers)


@pytest.mark.parametrize("fusion", ["nddr", "cross_stitch", "none", "shared"])
@pytest.mark.parametrize("shortcut", [False, True])
def test_builds_every_fusion(fusion, shortcut):
    model = _build(fusion=fusion, shortcut=shortcut)
    assert model.output_names == ["label", "angle"]
    ys = model(_images())
    assert [tuple(y.shape) for y in ys] == [(4, 5), (4, 3)]
    assert _count(model, NDDR) == (3 if fusion == "nddr" else 0)
    assert _count(model, CrossStitch) == (3 if fusion == "cross_stitch" else 0)
    stage_layers = [layer.name for layer in model.layers
                    if layer.name.startswith(("s1", "s2", "s3"))]
    if fusion == "shared":
        assert stage_layers == ["s1_shared", "s2_shared", "s3_task0",
                                "s3_task1"]
    else:
        assert sorted(stage_layers) == sorted(
            f"s{s}_task{k}" for s in (1, 2, 3) for k in (0, 1))


def test_tasks_have_their_own_weights():
    model = _build(fusion="nddr")
    ids = {}
    for layer in model.layers:
        if layer.name.startswith("s"):
            for v in layer.weights:
                assert id(v) not in ids
                ids[id(v)] = layer.name


def test_parameter_overhead_is_the_nddr_layers():
    none = _build(fusion="none").count_params()
    nddr = _build(fusion="nddr").count_params()
    # Per stage of width C: two kernels (2C, C) and BN (4 x 2C weights).
    expected = sum(2 * (2 * c) * c + 4 * 2 * c for c in (4, 6, 8))
    assert nddr - none == expected


def test_identity_nddr_equals_single_task_networks():
    # alpha=1, beta=0, no BN, linear: NDDR passes each task's features
    # through, so the network computes K single-task networks exactly.
    nddr = _build(fusion="nddr", batch_norm=False, nddr_kwargs={
        "alpha": 1.0, "beta": 0.0, "use_batch_norm": False,
        "activation": None})
    none = _build(fusion="none", batch_norm=False)
    for layer in none.layers:
        if layer.weights:
            layer.set_weights(nddr.get_layer(layer.name).get_weights())
    x = _images()
    for a, b in zip(nddr(x), none(x)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_single_task_network():
    model = nddr_network(INPUT, _stages(), _heads()[:1], fusion="none")
    assert len(model.outputs) == 1


def test_shortcut_layers_and_learning_rate_tags():
    model = _build(fusion="nddr", shortcut=True,
                   nddr_kwargs={"lr_multiplier": 100.0})
    resizes = [layer for layer in model.layers
               if isinstance(layer, keras.layers.Resizing)]
    # Stages 1 and 2 (6x6 and 3x3) are resized to stage 3's 3x3: only the
    # first one differs in size, per task.
    assert sorted(r.name for r in resizes) == [
        "shortcut_task0_resize_1", "shortcut_task1_resize_1"]
    assert all(r.interpolation == "bilinear" for r in resizes)
    conv = model.get_layer("shortcut_task0_conv")
    assert conv.kernel.shape == (1, 1, 4 + 6 + 8, 8)  # concat -> last width
    for layer in model.layers:
        for v in layer.trainable_weights:
            expected = 100.0 if layer.name.startswith(
                ("nddr", "shortcut")) else None
            assert get_lr_multiplier(v) == expected, v.path


def test_shortcut_channels_and_multiplier_arguments():
    model = _build(fusion="cross_stitch", shortcut=True,
                   shortcut_channels=[7, 2], shortcut_lr_multiplier=10.0)
    assert model.get_layer("shortcut_task1_conv").filters == 2
    assert get_lr_multiplier(
        model.get_layer("shortcut_task0_conv").kernel) == 10.0


def test_save_load_and_train_with_lr_multiplier(tmp_path):
    model = _build(fusion="nddr", shortcut=True,
                   nddr_kwargs={"lr_multiplier": 100.0})
    model.compile(
        optimizer=LearningRateMultiplier(keras.optimizers.SGD(0.01, 0.9)),
        loss={"label": keras.losses.SparseCategoricalCrossentropy(True),
              "angle": keras.losses.SparseCategoricalCrossentropy(True)})
    x = _images(8)
    y = {"label": np.arange(8) % 5, "angle": np.arange(8) % 3}
    history = model.fit(x, y, batch_size=4, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    model.save(tmp_path / "m.keras")
    restored = keras.saving.load_model(tmp_path / "m.keras", safe_mode=True)
    for a, b in zip(model.predict(x, verbose=0),
                    restored.predict(x, verbose=0)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    # NDDR layers re-tag their variables when rebuilt.
    assert get_lr_multiplier(restored.get_layer("nddr_1").kernels[0]) == 100.0


def test_exported():
    assert keras_dynfilt.models.nddr_network is nddr_network


# -- errors -------------------------------------------------------------------


@pytest.mark.parametrize("kwargs, match", [
    ({"fusion": "sluice"}, r"`fusion` must be one of .*fusion='sluice'"),
    ({"input_shape": (12, 12)}, r"`input_shape` must be \(height, width"),
    ({"stages": []}, r"`stages` must be a non-empty sequence"),
    ({"heads": []}, r"`heads` must be a non-empty sequence"),
    ({"task_names": ["a"]}, r"`task_names` must be 2 distinct names"),
    ({"task_names": ["a", "a"]}, r"`task_names` must be 2 distinct names"),
    ({"fusion": "shared", "shared_stages": 4},
     r"`shared_stages` must be at most the number of stages \(3\)"),
    ({"fusion": "shared", "shared_stages": 0},
     r"`shared_stages` must be an integer >= 1"),
    ({"fusion": "nddr", "shared_stages": 1},
     r"only applies to fusion='shared'"),
    ({"shortcut": True, "shortcut_channels": [3]},
     r"`shortcut_channels` must be a positive integer or a list of 2"),
])
def test_bad_arguments_raise(kwargs, match):
    arguments = {"input_shape": INPUT, "stages": _stages(), "heads": _heads()}
    arguments.update(kwargs)
    with pytest.raises(ValueError, match=match):
        nddr_network(**arguments)


def test_fusion_needs_two_tasks():
    with pytest.raises(ValueError, match=r"fusion='nddr' needs at least 2"):
        nddr_network(INPUT, _stages(), _heads()[:1])


def test_factory_returning_one_layer_for_all_tasks_raises():
    shared = keras.layers.Conv2D(4, 3, padding="same")
    with pytest.raises(ValueError, match=r"same layer for tasks 0 and 1"):
        nddr_network(INPUT, [lambda task: shared], _heads())


def test_factory_returning_non_callable_raises():
    with pytest.raises(ValueError, match=r"Stage factory 0 returned 3"):
        nddr_network(INPUT, [lambda task: 3], _heads())


def test_conv_stage_bad_arguments():
    with pytest.raises(ValueError, match=r"`filters` must be a positive"):
        conv_stage(0)
    with pytest.raises(ValueError, match=r"`num_convs` must be a positive"):
        conv_stage(4, num_convs=0)
