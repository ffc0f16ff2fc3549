import keras
import numpy as np
import pytest

from keras_dynfilt.pruning import apply_group_mask, compact, filter_groups
from tests.harness import mirrored_strategy
from tests.pruning.builders import (
    depthwise_model,
    max_relative_difference,
    random_inputs,
    randomize,
    residual_model,
    run,
)


def value(variable):
    return keras.ops.convert_to_numpy(variable.value)


def test_mask_zeroes_filters_bias_and_bn_gamma_beta_only():
    model = randomize(residual_model())
    group = filter_groups(model)[0]
    moving_mean = value(model.get_layer("bn_a").moving_mean)
    c_kernel = value(model.get_layer("c").kernel)
    keep = np.ones(8, bool)
    keep[[1, 6]] = False
    apply_group_mask(group, keep)
    for name in ("a", "b"):
        kernel = value(model.get_layer(name).kernel)
        assert not kernel[..., [1, 6]].any() and kernel[..., keep].all()
        assert not value(model.get_layer(name).bias)[[1, 6]].any()
    bn = model.get_layer("bn_a")
    assert not value(bn.gamma)[[1, 6]].any()
    assert not value(bn.beta)[[1, 6]].any()
    assert value(bn.gamma)[keep].all()
    # statistics and consumers are left alone (sliced on compaction only)
    np.testing.assert_array_equal(value(bn.moving_mean), moving_mean)
    np.testing.assert_array_equal(value(model.get_layer("c").kernel), c_kernel)


def test_masked_channels_are_exactly_zero_after_bn_and_add():
    model = randomize(residual_model())
    group = filter_groups(model)[0]
    keep = np.arange(8) % 3 != 0
    apply_group_mask(group, keep)
    probe = keras.Model(model.inputs[0], model.get_layer("relu").output)
    x = random_inputs(model)
    hidden = run(probe, x)
    assert not hidden[..., ~keep].any()
    assert hidden[..., keep].any()


def test_soft_masks_can_be_reapplied_and_regrow():
    model = randomize(depthwise_model())
    group = {g.name: g for g in filter_groups(model)}["expand"]
    apply_group_mask(group, np.array([1, 0, 1, 1], bool))
    kernel = model.get_layer("expand").kernel
    kernel.assign(kernel.value + 1.0)  # an optimizer step: filter regrows
    apply_group_mask(group, np.array([1, 1, 0, 1], bool))
    k = value(kernel)
    assert k[..., 1].all() and not k[..., 2].any()
    # the depthwise filters and bias that follow channel 2 are zero too
    dw = model.get_layer("dw")
    assert not value(dw.kernel)[:, :, 2, :].any()
    assert not value(dw.bias)[4:6].any()
    assert compact(model).get_layer("expand").filters == 3


@pytest.mark.parametrize(
    "keep, error",
    [
        (np.ones(3, bool), ValueError),
        (np.ones((8, 1), bool), ValueError),
        (np.ones(8, "float32"), TypeError),
        (np.arange(8), TypeError),
    ],
)
def test_invalid_keep_raises(keep, error):
    group = filter_groups(residual_model())[0]
    with pytest.raises(error, match=r"`keep` must be a boolean array of "
                       r"shape \(8,\).*Received"):
        apply_group_mask(group, keep)


def test_mask_inside_a_jitted_training_loop_stays_exact():
    model = randomize(residual_model())
    model.compile(optimizer=keras.optimizers.SGD(0.05), loss="mse",
                  jit_compile=True)
    x = random_inputs(model, batch=8)
    y = np.random.default_rng(0).normal(size=(8, 4)).astype("float32")
    group = filter_groups(model)[0]
    keep = np.arange(8) >= 2
    model.fit(x, y, epochs=1, verbose=0)
    apply_group_mask(group, keep)
    small = compact(model)
    assert small.get_layer("a").filters == 6
    assert max_relative_difference(
        run(model, x), run(small, x)
    ) <= 1e-5


@pytest.mark.tensorflow
def test_mask_under_mirrored_strategy_updates_every_replica():
    strategy = mirrored_strategy()
    with strategy.scope():
        model = randomize(residual_model())
    group = filter_groups(model)[0]
    keep = np.arange(8) != 4
    apply_group_mask(group, keep)
    for variable in (model.get_layer("a").kernel, model.get_layer("bn_a").beta):
        replicas = variable.value.values
        assert len(replicas) == 2
        for replica in replicas:
            assert not np.asarray(replica)[..., 4].any()
            assert np.asarray(replica)[..., 3].all()
