import numpy as np
import pytest

from keras_dynfilt import cross_task


@pytest.fixture(scope="module")
def features():
    rng = np.random.default_rng(1)
    n = 300
    signal = rng.normal(size=n)
    layers = {
        "good": np.stack([signal + 0.3 * rng.normal(size=n),
                          rng.normal(size=n)], 1),
        "bad": rng.normal(size=(n, 3)),
    }
    return layers, signal


def _splits(layers, y, a=200, b=250):
    return [({k: v[s] for k, v in layers.items()}, y[s])
            for s in (slice(0, a), slice(a, b), slice(b, None))]


def test_binary_threshold_is_the_validation_optimum(features):
    layers, signal = features
    y = (signal > 0.3).astype(float)
    train, val, test = _splits(layers, y)
    result = cross_task.linear_transfer(train, val, "binary", test=test)
    assert result.best_layer == "good"
    for name in layers:
        score = result.models[name].predict(val[0][name])
        chosen = np.mean((score > result.thresholds[name]) == (val[1] > 0.5))
        # Every threshold between two scores (and beyond both ends).
        edges = np.sort(score)
        candidates = np.concatenate(
            [[edges[0] - 1], (edges[1:] + edges[:-1]) / 2, [edges[-1] + 1]])
        best = max(np.mean((score > t) == (val[1] > 0.5))
                   for t in candidates)
        assert chosen == best
        assert result.scores[name]["val"]["accuracy"] == chosen
    assert result.scores["good"]["test"]["accuracy"] > 0.8
    assert result.seconds > 0


def test_ordinal_and_categorical_scores(features):
    layers, signal = features
    bins = np.array([-1.0, 0.0, 1.0])
    train, val, test = _splits(layers, signal)
    result = cross_task.linear_transfer(train, val, "ordinal", test=test,
                                        bins=bins)
    model = result.models["good"]
    expected = np.mean(np.digitize(model.predict(test[0]["good"]), bins)
                       == np.digitize(test[1], bins))
    assert result.scores["good"]["test"]["accuracy"] == expected
    labels = np.digitize(signal, bins)
    train, val, test = _splits(layers, labels)
    result = cross_task.linear_transfer(train, val, "categorical", test=test)
    assert result.best_layer == "good"
    predicted = result.predict(test[0]["good"])
    assert result.scores["good"]["test"]["accuracy"] == np.mean(
        predicted == test[1])
    continuous = cross_task.linear_transfer(*_splits(layers, signal)[:2],
                                            "continuous", layers=["bad"])
    assert list(continuous.scores) == ["bad"]
    assert set(continuous.scores["bad"]["val"]) == {"rmse", "mae", "r2"}


def test_bad_inputs(features):
    layers, signal = features
    train, val, _ = _splits(layers, signal)
    with pytest.raises(ValueError, match="`task` must be one of"):
        cross_task.linear_transfer(train, val, "regression")
    with pytest.raises(ValueError, match="needs `bins=`"):
        cross_task.linear_transfer(train, val, "ordinal")
    with pytest.raises(ValueError, match="which `train` has no features"):
        cross_task.linear_transfer(train, val, "continuous", layers=["x"])
    with pytest.raises(ValueError, match="same number of samples"):
        cross_task.linear_transfer((train[0], train[1][:-1]), val,
                                   "continuous")
    with pytest.raises(ValueError, match="labels in"):
        cross_task.linear_transfer(train, val, "binary")
    with pytest.raises(ValueError, match="no channels to probe"):
        cross_task.linear_transfer(({"e": np.zeros((200, 0))}, train[1]),
                                   ({"e": np.zeros((50, 0))}, val[1]),
                                   "continuous")
