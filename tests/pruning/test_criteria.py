"""Importance criteria against NumPy references on small models."""

import keras
import numpy as np
import pytest

from keras_dynfilt.pruning import criteria, filter_groups

L = keras.layers


def residual_model():
    """`a` and `b` (6 filters each, BN) meet in an Add: one group of two
    coupled layers; `c` (5 filters, BN) is a group of its own."""
    inputs = keras.Input((6, 6, 3))
    a = L.BatchNormalization(name="bn_a")(
        L.Conv2D(6, 3, padding="same", name="a")(inputs))
    b = L.BatchNormalization(name="bn_b")(
        L.Conv2D(6, 1, name="b")(inputs))
    x = L.ReLU()(L.Add()([a, b]))
    c = L.BatchNormalization(name="bn_c")(
        L.Conv2D(5, 3, padding="same", name="c")(x))
    x = L.GlobalAveragePooling2D()(L.ReLU()(c))
    return keras.Model(inputs, L.Dense(3, name="head")(x))


def randomized(model, seed=0):
    rng = np.random.default_rng(seed)
    for w in model.weights:
        if "moving_variance" in w.path:
            w.assign(rng.uniform(0.5, 2.0, w.shape).astype("float32"))
        else:
            w.assign(rng.normal(size=w.shape).astype("float32"))
    return model


def numpy_of(model, layer, weight="kernel"):
    return keras.ops.convert_to_numpy(
        getattr(model.get_layer(layer), weight)
    ).astype("float64")


def filters_of(model, layer):
    k = numpy_of(model, layer)
    return np.moveaxis(k, -1, 0).reshape(k.shape[-1], -1)


def groups_by_layer(model):
    return {
        path: g for g in filter_groups(model, warn=False) for path in g.layers
    }


@pytest.fixture
def model():
    keras.utils.set_random_seed(0)
    return randomized(residual_model())


def test_group_is_the_coupled_pair(model):
    groups = groups_by_layer(model)
    assert set(groups["a"].layers) == {"a", "b"}
    assert groups["a"] is groups["b"]
    assert groups["c"].layers == ("c",)


def test_l1_l2_reduce_over_every_coupled_filter(model):
    fa, fb = filters_of(model, "a"), filters_of(model, "b")
    [s_l1, _], [s_l2, _] = (
        criteria.score_groups(
            [groups_by_layer(model)[k] for k in ("a", "c")], name
        )
        for name in ("l1", "l2")
    )
    np.testing.assert_allclose(
        s_l1, np.abs(fa).sum(1) + np.abs(fb).sum(1), rtol=1e-6
    )
    np.testing.assert_allclose(
        s_l2, np.sqrt((fa**2).sum(1) + (fb**2).sum(1)), rtol=1e-6
    )


def test_fpgm_is_the_sum_of_distances(model):
    rows = np.concatenate([filters_of(model, "a"), filters_of(model, "b")], 1)
    expected = [
        sum(np.linalg.norm(rows[i] - rows[j]) for j in range(len(rows)))
        for i in range(len(rows))
    ]
    [scores] = criteria.score_groups([groups_by_layer(model)["a"]], "fpgm")
    np.testing.assert_allclose(scores, expected, rtol=1e-5)


def test_lamp_reference(model):
    rows = np.concatenate([filters_of(model, "a"), filters_of(model, "b")], 1)
    s = (rows**2).sum(1)
    expected = [s[u] / s[s >= s[u]].sum() for u in range(len(s))]
    [scores] = criteria.score_groups([groups_by_layer(model)["a"]], "lamp")
    np.testing.assert_allclose(scores, expected, rtol=1e-5)
    # The largest unit always scores 1: comparable across groups.
    assert scores.max() == pytest.approx(1.0)


def test_bn_scale_sums_the_coupled_gammas(model):
    groups = groups_by_layer(model)
    a, c = criteria.score_groups([groups["a"], groups["c"]], "bn_scale")
    np.testing.assert_allclose(
        a,
        np.abs(numpy_of(model, "bn_a", "gamma"))
        + np.abs(numpy_of(model, "bn_b", "gamma")),
        rtol=1e-6,
    )
    np.testing.assert_allclose(
        c, np.abs(numpy_of(model, "bn_c", "gamma")), rtol=1e-6
    )


def test_bn_scale_without_bn_is_an_error():
    inputs = keras.Input((6, 6, 3))
    x = L.Conv2D(4, 3, name="plain")(inputs)
    x = L.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, L.Dense(2)(x))
    with pytest.raises(ValueError, match="criterion='bn_scale'.*'plain'"):
        criteria.score_groups(filter_groups(model), "bn_scale")


def test_random_is_seeded(model):
    groups = list(filter_groups(model, warn=False))
    first = criteria.score_groups(groups, "random", seed=3)
    again = criteria.score_groups(groups, "random", seed=3)
    other = criteria.score_groups(groups, "random", seed=4)
    rng = np.random.default_rng(3)
    for s, t, g in zip(first, again, groups):
        np.testing.assert_array_equal(s, t)
        np.testing.assert_array_equal(s, rng.random(g.size))
    assert not np.array_equal(first[0], other[0])


def test_callable_gets_the_filter_matrix(model):
    group = groups_by_layer(model)["c"]
    seen = []

    def criterion(weights):
        seen.append(weights)
        return -weights.sum(1)

    [scores] = criteria.score_groups([group], criterion)
    np.testing.assert_allclose(seen[0], filters_of(model, "c"), rtol=1e-6)
    np.testing.assert_allclose(scores, -filters_of(model, "c").sum(1),
                               rtol=1e-6)


def mlp(seed=0):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((5,))
    h = L.Dense(7, name="hidden")(inputs)
    model = keras.Model(inputs, L.Dense(2, name="out")(h))
    model.compile("sgd", "mse")
    return model


def taylor_reference(model, batches):
    """NumPy gradients of the mean squared error of a linear MLP."""
    w1, b1 = numpy_of(model, "hidden"), numpy_of(model, "hidden", "bias")
    w2, b2 = numpy_of(model, "out"), numpy_of(model, "out", "bias")
    g_w1 = np.zeros_like(w1)
    g_b1 = np.zeros_like(b1)
    for x, y in batches:
        x, y = x.astype("float64"), y.astype("float64")
        h = x @ w1 + b1
        pred = h @ w2 + b2
        d_pred = 2.0 * (pred - y) / pred.size
        d_h = d_pred @ w2.T
        g_w1 += x.T @ d_h / len(batches)
        g_b1 += d_h.sum(0) / len(batches)
    return np.abs(w1 * g_w1).sum(0) + np.abs(b1 * g_b1)


def test_taylor_against_numpy_gradients():
    model = mlp()
    rng = np.random.default_rng(1)
    x = rng.normal(size=(24, 5)).astype("float32")
    y = rng.normal(size=(24, 2)).astype("float32")
    [group] = filter_groups(model, warn=False)
    [scores] = criteria.score_groups(
        [group], "taylor", data=(x, y), batch_size=8, batches=3
    )
    expected = taylor_reference(
        model, [(x[i : i + 8], y[i : i + 8]) for i in (0, 8, 16)]
    )
    np.testing.assert_allclose(scores, expected, rtol=1e-4)
    # An iterable of batches gives the same; `batches` caps it.
    [again] = criteria.score_groups(
        [group], "taylor", data=[(x[:8], y[:8]), (x[8:16], y[8:16])],
        batches=1,
    )
    np.testing.assert_allclose(
        again, taylor_reference(model, [(x[:8], y[:8])]), rtol=1e-4
    )


def test_taylor_errors():
    model = mlp()
    [group] = filter_groups(model, warn=False)
    with pytest.raises(ValueError, match="'taylor' ranks units from data"):
        criteria.score_groups([group], "taylor")
    inputs = keras.Input((5,))
    plain = keras.Model(inputs, L.Dense(2)(L.Dense(4)(inputs)))
    with pytest.raises(ValueError, match="compile the model with a loss"):
        criteria.score_groups(
            filter_groups(plain, warn=False), "taylor",
            data=(np.zeros((4, 5)), np.zeros((4, 2))),
        )
    with pytest.raises(TypeError, match="`data` must be a tuple"):
        criteria.score_groups([group], "taylor", data=3)


def test_unknown_criterion():
    with pytest.raises(ValueError, match=r"`criterion` must be one of.*'l3'"):
        criteria.score_groups([], "l3")


def test_normalize_makes_group_means_one(model):
    groups = list(filter_groups(model, warn=False))
    scores = criteria.score_groups(groups, "l2")
    for s in criteria.normalize(scores, "l2"):
        assert np.mean(s) == pytest.approx(1.0)
    lamp = criteria.score_groups(groups, "lamp")
    for s, t in zip(lamp, criteria.normalize(lamp, "lamp")):
        np.testing.assert_array_equal(s, t)


@pytest.mark.parametrize(
    "size, removed, round_to, expected",
    [(16, 5, 8, 0), (16, 9, 8, 8), (16, 8, 8, 8), (12, 5, 8, 4),
     (12, 3, 8, 0), (10, 3, None, 3), (10, 3, 1, 3)],
)
def test_round_kept(size, removed, round_to, expected):
    assert criteria.round_kept(size, removed, round_to) == expected


def test_lowest_removes_the_n_lowest_stably():
    keep = criteria.lowest(np.array([3.0, 1.0, 1.0, 2.0]), 2)
    assert keep.tolist() == [True, False, False, True]
    assert criteria.lowest(np.array([1.0, 1.0, 1.0]), 1).tolist() == [
        False, True, True]


class _EagerOnly(keras.layers.Layer):
    """Identity that reads its input as NumPy: runs eagerly only."""

    def call(self, x):
        if not np.all(np.isfinite(keras.ops.convert_to_numpy(x))):
            raise ValueError("non-finite input")
        return x

    def compute_output_shape(self, input_shape):
        return input_shape


@pytest.mark.filterwarnings("ignore")
def test_compiled_gradients_match_eager_and_fall_back():
    from keras_dynfilt.pruning._gradients import (
        gradient_function,
        loss_gradients,
    )

    model = mlp()
    rng = np.random.default_rng(2)
    x = rng.normal(size=(8, 5)).astype("float32")
    y = rng.normal(size=(8, 2)).astype("float32")
    compiled = gradient_function(model)
    for got, want in zip(compiled(x, y), loss_gradients(model, x, y)):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)
    if keras.backend.backend() != "tensorflow":
        return  # jax.grad traces too: no layer runs only eagerly there
    # A layer that only runs eagerly: the eager gradient takes over.
    keras.utils.set_random_seed(0)
    inputs = keras.Input((5,))
    h = _EagerOnly()(L.Dense(7, name="hidden")(inputs))
    eager_only = keras.Model(inputs, L.Dense(2, name="out")(h))
    eager_only.compile("sgd", "mse")
    expected = loss_gradients(eager_only, x, y)
    gradients = gradient_function(eager_only)
    for _ in range(2):
        for got, want in zip(gradients(x, y), expected):
            np.testing.assert_array_equal(got, want)
