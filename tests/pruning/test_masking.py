import keras
import numpy as np
import pytest

from keras_dynfilt.pruning import (
    apply_group_mask,
    apply_group_masks,
    compact,
    filter_groups,
)
from tests.harness import mirrored_strategy
from tests.pruning.builders import (
    BUILDERS,
    dense_block_model,
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


def random_keeps(groups, seed=0, fraction=0.4):
    """A random keep array per group (at least one unit kept)."""
    rng = np.random.default_rng(seed)
    keeps = []
    for group in groups:
        keep = np.ones(group.size, bool)
        n = min(group.size - 1, max(1, int(group.size * fraction)))
        keep[rng.permutation(group.size)[:n]] = False
        keeps.append(keep)
    return keeps


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_apply_group_masks_equals_a_call_per_group(name):
    model = randomize(BUILDERS[name]())
    twin = BUILDERS[name]()
    twin.set_weights(model.get_weights())
    original = model.get_weights()
    groups, twin_groups = filter_groups(model), filter_groups(twin)
    keeps = random_keeps(groups)
    apply_group_masks(dict(zip(groups, keeps)))
    for group, keep in zip(twin_groups, keeps):
        apply_group_mask(group, keep)
    masked = model.get_weights()
    assert any((a != b).any() for a, b in zip(masked, original))
    for a, b in zip(masked, twin.get_weights()):
        np.testing.assert_array_equal(a, b)
    x = random_inputs(model)
    small = compact(model)
    assert max_relative_difference(run(model, x), run(small, x)) <= 1e-5


def test_apply_group_masks_zeroes_a_bn_shared_by_every_group():
    model = randomize(dense_block_model())
    groups = filter_groups(model)
    # the stem and the four convolutions: bn_out reads all of them
    assert len(groups) == 5
    keeps = [np.arange(g.size) != 0 for g in groups]  # the first of each
    apply_group_masks(dict(zip(groups, keeps)))
    gamma = value(model.get_layer("bn_out").gamma)
    removed = [0, 4, 7, 10, 13]  # stem: 4 channels, then 3 per layer
    assert not gamma[removed].any()
    assert np.delete(gamma, removed).all()
    small = compact(model)
    assert small.get_layer("bn_out").gamma.shape == (16 - 5,)


def test_apply_group_masks_keeps_a_group_kept_whole_untouched():
    model = randomize(dense_block_model())
    groups = filter_groups(model)
    kernel = value(model.get_layer("conv3").kernel)
    masks = {g: np.ones(g.size, bool) for g in groups}
    masks[groups[0]] = np.arange(groups[0].size) != 1
    apply_group_masks(masks)
    np.testing.assert_array_equal(value(model.get_layer("conv3").kernel),
                                  kernel)
    assert not value(model.get_layer("stem").kernel)[..., 1].any()


@pytest.mark.parametrize(
    "masks, error, match",
    [
        ([np.ones(8, bool)], TypeError, r"`masks` must be a dict .*"
         r"Received: masks of type list"),
        ({"a": np.ones(8, bool)}, TypeError, r"`masks` must map "
         r"FilterGroups .*Received: a key of type str"),
        ("short", ValueError, r"`masks\['.*'\]` must be a boolean array "
         r"of shape \(8,\).*Received"),
        ("ints", TypeError, r"`masks\['.*'\]` must be a boolean array .*"
         r"Received"),
        ("none_kept", ValueError, r"removes every unit of group"),
    ],
)
def test_apply_group_masks_invalid_input_raises(masks, error, match):
    model = residual_model()
    group = filter_groups(model)[0]
    kernel = value(model.get_layer("a").kernel)
    if isinstance(masks, str):
        masks = {group: {
            "short": np.ones(3, bool), "ints": np.arange(8),
            "none_kept": np.zeros(8, bool),
        }[masks]}
    with pytest.raises(error, match=match):
        apply_group_masks(masks)
    np.testing.assert_array_equal(value(model.get_layer("a").kernel), kernel)


@pytest.mark.tensorflow
def test_apply_group_masks_under_mirrored_strategy_updates_every_replica():
    strategy = mirrored_strategy()
    with strategy.scope():
        model = randomize(dense_block_model())
    groups = filter_groups(model)
    apply_group_masks({g: np.arange(g.size) != 1 for g in groups})
    gamma = model.get_layer("bn_out").gamma
    replicas = gamma.value.values
    assert len(replicas) == 2
    for replica in replicas:
        replica = np.asarray(replica)
        assert not replica[[1, 5, 8, 11, 14]].any()
        assert np.delete(replica, [1, 5, 8, 11, 14]).all()
