import keras
import numpy as np
import pytest

from keras_dynfilt.pruning import compact, filter_groups, model_cost
from tests.pruning.builders import (
    BUILDERS,
    concat_model,
    depthwise_model,
    max_relative_difference,
    mfm_model,
    nested_model,
    random_inputs,
    randomize,
    residual_model,
    run,
    zero_random_units,
)


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_masked_model_equals_compacted_model(name):
    model = randomize(BUILDERS[name]())
    zero_random_units(model, seed=3)
    x = random_inputs(model)
    small = compact(model)
    assert small is not model and small.name == model.name
    assert max_relative_difference(
        run(model, x), run(small, x)
    ) <= 1e-5
    assert small.count_params() < model.count_params()
    assert model_cost(small).macs < model_cost(model).macs
    # Nothing left to remove: compacting again is the identity.
    again = compact(small)
    assert again.count_params() == small.count_params()


@pytest.mark.parametrize("name", ["residual", "mfm", "resnet_a"])
def test_masked_equals_compacted_in_training_mode(name):
    # Batch statistics: a removed channel is 0 in, so 0 out of BN as well.
    model = randomize(BUILDERS[name]())
    zero_random_units(model, seed=4)
    x = random_inputs(model, batch=4)
    small = compact(model)
    full = keras.ops.convert_to_numpy(model(x, training=True))
    found = keras.ops.convert_to_numpy(small(x, training=True))
    assert max_relative_difference(full, found) <= 1e-5


def test_residual_hand_counts():
    model = randomize(residual_model())
    masks = {
        "a": np.arange(8) >= 3,  # b is coupled to a through the add
        "b": np.arange(8) >= 3,
        "c": np.array([1, 0, 1, 1, 0, 1], bool),
    }
    small = compact(model, masks)
    assert small.get_layer("a").filters == 5
    assert small.get_layer("b").filters == 5
    assert small.get_layer("c").filters == 4
    # a: 3*3*3*5+5, bn: 4*5, b: 3*5+5, c: 3*3*5*4+4, head: 4*4+4
    assert small.count_params() == 140 + 20 + 20 + 184 + 20
    # a: 8*8*5*27, bn: 8*8*5, b: 8*8*5*3, c: 8*8*4*45, head: 4*4
    assert model_cost(small).macs == 8640 + 320 + 960 + 11520 + 16
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(small.get_layer("a").kernel),
        keras.ops.convert_to_numpy(model.get_layer("a").kernel)[..., 3:],
    )


def test_concatenate_offsets_slice_the_consumer_rows():
    model = randomize(concat_model())
    small = compact(
        model, {"p": np.array([1, 0, 1, 1], bool),
                "q": np.array([0, 1, 1, 1, 1, 0], bool)},
    )
    kept_rows = [0, 2, 3, 4 + 1, 4 + 2, 4 + 3, 4 + 4]
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(small.get_layer("r").kernel),
        keras.ops.convert_to_numpy(model.get_layer("r").kernel)[
            :, :, kept_rows
        ],
    )
    # p: 2*3+3, q: 2*4+4, r: 7*3+3, head: 6*6*3*2+2
    assert small.count_params() == 9 + 12 + 24 + 218
    x = random_inputs(model)
    assert max_relative_difference(
        run(model, x), run(small, x)
    ) > 1e-3  # explicit masks remove live filters: the function changes


def test_mfm_pair_and_flatten_to_dense():
    model = randomize(mfm_model())
    groups = {g.name: g for g in filter_groups(model)}
    assert groups["conv"].units[1] == (("conv", 1), ("conv", 5))
    keep = np.array([1, 0, 1, 1], bool)
    small = compact(model, {groups["conv"]: keep})
    assert small.get_layer("conv").filters == 6
    # Flatten of a 2x2x3 map: channel c is units p * 3 + c of the Dense.
    rows = [p * 4 + c for p in range(4) for c in (0, 2, 3)]
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(small.get_layer("fc").kernel),
        keras.ops.convert_to_numpy(model.get_layer("fc").kernel)[rows],
    )
    # conv: 3*3*2*6+6, fc: 12*6+6, head: 3*3+3
    assert small.count_params() == 114 + 78 + 12


def test_depthwise_grouped_and_separable_follow_their_input():
    model = randomize(depthwise_model())
    small = compact(model, {"expand": np.array([1, 1, 0, 1], bool),
                            "grouped": np.array([1, 0, 1, 1, 0, 1], bool),
                            "pre_dw": np.array([0, 1, 1, 1], bool)})
    assert small.get_layer("dw").kernel.shape == (3, 3, 3, 2)
    assert small.get_layer("bn").gamma.shape == (6,)
    assert small.get_layer("sep").depthwise_kernel.shape == (3, 3, 6, 1)
    assert small.get_layer("grouped").filters == 4
    assert small.get_layer("grouped").groups == 2
    assert small.get_layer("dw_as_grouped").groups == 3
    assert small.get_layer("dw_as_grouped").filters == 3


def test_nested_models_are_rebuilt():
    model = randomize(nested_model())
    small = compact(model, {"outer_conv": np.arange(6) != 2,
                            "inner/inner_conv": np.arange(5) < 3,
                            "block/seq_conv": np.arange(3) != 1})
    inner, block = small.get_layer("inner"), small.get_layer("block")
    assert inner.input.shape == (None, 4, 4, 5)
    assert inner.get_layer("inner_conv").filters == 3
    assert block.get_layer("seq_conv").kernel.shape == (1, 1, 3, 2)
    assert small.get_layer("head").kernel.shape == (4 * 4 * 2, 2)


@pytest.mark.parametrize(
    "masks, error, match",
    [
        ({"nope": [True]}, ValueError, r"layer 'nope'.*not a layer"),
        ({"relu": [True]}, ValueError, r"'relu'.*no prunable filters"),
        ({"a": [True] * 3}, ValueError, r"masks\['a'\]` must have shape"),
        ({"a": np.arange(8) > 0, "b": np.arange(8) > 1}, ValueError,
         r"disagree on coupled filters"),
        ({"head": [True, True, False, True]}, ValueError,
         r"Filter 2 of layer 'head' cannot be removed.*model output"),
        ({"c": [False] * 6}, ValueError, r"remove every channel"),
        ([True], TypeError, r"`masks` must be a dict"),
    ],
)
def test_invalid_masks_raise(masks, error, match):
    with pytest.raises(error, match=match):
        compact(residual_model(), masks)


def test_kernel_only_zeros_are_not_removed():
    # A filter is removed by default only when everything masking zeroes is
    # zero (here the BN beta is not): removing it would change the outputs.
    model = randomize(residual_model())
    for name in ("a", "b"):
        kernel = model.get_layer(name).kernel
        kernel.assign(keras.ops.where(
            keras.ops.arange(8) == 0, 0.0, kernel.value))
        model.get_layer(name).bias.assign(
            keras.ops.where(keras.ops.arange(8) == 0, 0.0,
                            model.get_layer(name).bias.value))
    assert compact(model).get_layer("a").filters == 8


def test_save_load_safe_mode(tmp_path):
    model = randomize(BUILDERS["resnet_a"]())
    zero_random_units(model)
    small = compact(model)
    path = tmp_path / "small.keras"
    small.save(path)
    restored = keras.saving.load_model(path, safe_mode=True)
    x = random_inputs(model)
    np.testing.assert_allclose(
        run(restored, x), run(small, x),
        rtol=1e-6, atol=1e-6,
    )


@pytest.mark.tensorflow
def test_export_saved_model_and_tflite(tmp_path):
    import tensorflow as tf

    model = randomize(depthwise_model())
    zero_random_units(model, seed=5)
    small = compact(model)
    x = random_inputs(model)
    expected = run(small, x)
    small.export(str(tmp_path / "saved"), verbose=False)
    loaded = tf.saved_model.load(str(tmp_path / "saved"))
    served = loaded.serve(x)
    np.testing.assert_allclose(served.numpy(), expected, rtol=1e-5, atol=1e-5)
    tflite = tf.lite.TFLiteConverter.from_keras_model(small).convert()
    interpreter = tf.lite.Interpreter(model_content=tflite)
    interpreter.resize_tensor_input(
        interpreter.get_input_details()[0]["index"], x.shape
    )
    interpreter.allocate_tensors()
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x)
    interpreter.invoke()
    found = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
    np.testing.assert_allclose(found, expected, rtol=1e-4, atol=1e-4)


def test_compacted_configs_keep_everything_but_the_widths():
    model = residual_model()
    small = compact(model, {"c": np.arange(6) > 1})
    for layer in model.layers:
        old = layer.get_config()
        new = small.get_layer(layer.name).get_config()
        if layer.name == "c":
            assert (old.pop("filters"), new.pop("filters")) == (6, 4)
        assert new == old


def test_mixed_precision_model_compacts():
    keras.config.set_dtype_policy("mixed_float16")
    model = randomize(residual_model())
    zero_random_units(model, seed=2)
    small = compact(model)
    assert small.get_layer("a").dtype_policy.name == "mixed_float16"
    assert small.get_layer("a").kernel.dtype == "float32"
    x = random_inputs(model)
    assert max_relative_difference(
        run(model, x), run(small, x)
    ) <= 1e-2  # float16 activations


def test_naming_one_filter_removes_its_whole_unit():
    small = compact(residual_model(), {"a": np.arange(8) != 2})
    assert small.get_layer("a").filters == small.get_layer("b").filters == 7
