import ast
import pathlib
import sys

import numpy as np
import pytest

from keras_dynfilt import cross_task

PACKAGE = pathlib.Path(cross_task.__file__).parent


@pytest.fixture(scope="module")
def synthetic():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(500, 40))
    y = 3 * x[:, 0] - 2 * x[:, 5] + 0.1 * rng.normal(size=500)
    return x[:350], y[:350], x[350:], y[350:]


@pytest.fixture(scope="module")
def curve(synthetic):
    return cross_task.characteristic_curve(*synthetic)


def test_lambda_grid_and_first_point_empty(curve, synthetic):
    x, y = synthetic[:2]
    assert curve.lambdas.shape == (100,)
    assert curve.coefs.shape == (100, 40)
    np.testing.assert_allclose(curve.lambdas[0] / curve.lambdas[-1], 1e4)
    ratios = curve.lambdas[1:] / curve.lambdas[:-1]
    np.testing.assert_allclose(ratios, ratios[0])
    xs = (x - x.mean(0)) / x.std(0)
    ys = (y - y.mean()) / y.std()
    np.testing.assert_allclose(
        curve.lambdas[0], np.abs(xs.T @ ys).max() / len(x), rtol=1e-8)
    assert curve.n_filters[0] == 0
    assert curve.n_filters[1] >= 1  # lambda_max is the smallest empty one
    assert curve.n_filters[-1] > 10  # small lambdas keep noise channels
    assert curve.rmse.shape == curve.rmse_train.shape == (100,)
    assert curve.seconds > 0


def test_knee_keeps_exactly_the_two_informative_features(curve):
    knee = curve.knee(0.01)
    assert np.flatnonzero(knee.keep).tolist() == [0, 5]
    assert knee.n_filters == 2
    assert knee.rmse == curve.rmse[knee.index]
    assert knee.rmse < 0.2 * curve.rmse[0]


def test_lasso_predictions_match_the_coefficients(curve, synthetic):
    x_val, y_val = synthetic[2:]
    index = curve.knee(0.01).index
    prediction = curve.predict(x_val, index)
    rmse = np.sqrt(np.mean((prediction - y_val) ** 2))
    np.testing.assert_allclose(rmse, curve.rmse[index])


def test_multi_output_path_on_one_hot_targets(synthetic):
    x, _, x_val, _ = synthetic
    labels = (x[:, 2] > 0).astype(int) + (x[:, 7] > 0.5).astype(int)
    labels_val = (x_val[:, 2] > 0).astype(int) + (x_val[:, 7] > 0.5)
    curve = cross_task.characteristic_curve(
        x, np.eye(3)[labels], x_val, np.eye(3)[labels_val.astype(int)],
        n_lambdas=30)
    assert curve.coefs.shape == (30, 40, 3)
    assert curve.n_filters[0] == 0
    keep = curve.knee(0.1).keep
    assert keep[2] and keep[7] and keep.sum() <= 6


def test_knee_edge_cases():
    n = np.array([0, 1, 2, 2, 3, 5, 8])
    rmse = np.array([1.0, 0.5, 0.2, 0.15, 0.1, 0.1, 0.1])
    # t = 0: the fewest filters that reach the minimum RMSE.
    assert cross_task.knee_point(n, rmse, threshold=0) == 4
    # t = 1: every point qualifies -> the fewest filters allowed.
    assert cross_task.knee_point(n, rmse, threshold=1) == 1
    assert cross_task.knee_point(n, rmse, threshold=1, min_filters=0) == 0
    assert cross_task.knee_point(n, rmse, threshold=1, min_filters=4) == 5
    # Ties in the number of filters: the lower RMSE.
    assert cross_task.knee_point(n, rmse, threshold=0.12) == 3
    # Ties in filters and RMSE: the first point (largest lambda).
    assert cross_task.knee_point([0, 2, 2], [1.0, 0.5, 0.5], 0.6) == 1
    # The default t = 0.01 (eq. 2 by hand): within 0.009 of 0.1.
    assert cross_task.knee_point(n, rmse) == 4


@pytest.mark.parametrize("threshold", [-0.1, 1.5, True, "0.01", None])
def test_knee_threshold_outside_unit_interval(threshold):
    with pytest.raises(ValueError, match="`threshold` must be a number in"):
        cross_task.knee_point([0, 1], [1.0, 0.0], threshold=threshold)


def test_knee_and_curve_bad_inputs(synthetic):
    x, y, x_val, y_val = synthetic
    with pytest.raises(ValueError, match="of the same, non-zero length"):
        cross_task.knee_point([0, 1, 2], [1.0, 0.0])
    with pytest.raises(ValueError, match="at least min_filters=9"):
        cross_task.knee_point([0, 1, 2], [1.0, 0.5, 0.0], min_filters=9)
    with pytest.raises(ValueError, match="same number of samples"):
        cross_task.characteristic_curve(x, y[:-1], x_val, y_val)
    with pytest.raises(ValueError, match="no channels to probe"):
        cross_task.characteristic_curve(x[:, :0], y, x_val[:, :0], y_val)
    with pytest.raises(ValueError, match="same channels"):
        cross_task.characteristic_curve(x, y, x_val[:, :3], y_val)
    with pytest.raises(ValueError, match="constant"):
        cross_task.characteristic_curve(x, 0 * y + 1, x_val, y_val)


def test_missing_scikit_learn_names_the_extra(monkeypatch, synthetic):
    monkeypatch.setitem(sys.modules, "sklearn.linear_model", None)
    with pytest.raises(ImportError, match=r"keras-dynfilt\[sklearn\]"):
        cross_task.characteristic_curve(*synthetic)


def test_scikit_learn_and_matplotlib_are_imported_lazily():
    # `import keras_dynfilt` does not import this package, and no module of
    # it imports scikit-learn or matplotlib at the top level.
    init = ast.parse((PACKAGE.parent / "__init__.py").read_text())
    imported = {a.name for n in ast.walk(init)
                if isinstance(n, ast.ImportFrom) for a in n.names}
    assert "cross_task" not in imported
    for path in PACKAGE.glob("*.py"):
        for node in ast.parse(path.read_text()).body:
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            for name in names:
                assert not name.startswith(("sklearn", "matplotlib")), path


def test_plot_characteristic_curves(tmp_path, curve):
    path = cross_task.plot_characteristic_curves(
        {"layer": curve}, tmp_path / "curves.png",
        knees=[0.1, 0.01, 0.001])
    assert path.stat().st_size > 1000
    with pytest.raises(ValueError, match="non-empty dict"):
        cross_task.plot_characteristic_curves({}, tmp_path / "x.png")


def test_plot_characteristic_curves_without_matplotlib_warns(
    tmp_path, monkeypatch, curve
):
    # `None` in sys.modules makes `import matplotlib` raise ImportError.
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    path = tmp_path / "curves.png"
    written = r"curves\.png is not written.*\[plot\]"
    with pytest.warns(UserWarning, match=written):
        assert cross_task.plot_characteristic_curves(
            {"layer": curve}, path
        ) is None
    assert not path.exists()
