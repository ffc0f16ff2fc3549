"""make_tuner: fail fast, explicit objectives, reloads, clear errors."""

import importlib
import sys

import keras
import numpy as np
import pytest

from keras_dynfilt import tuning  # noqa: E402
from tests.tuning.common import image_data, kt, tiny_conv  # noqa: E402


def dense_data(n=32, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4)).astype("float32")
    return x, (x[:, 0] > 0).astype("int32")


class CountingHyperModel(kt.HyperModel):
    """A tiny dense classifier that counts its fits; fails on request."""

    def __init__(self, fail_units=(), **kwargs):
        super().__init__(**kwargs)
        self.fail_units = tuple(fail_units)
        self.fits = 0

    def build(self, hp):
        units = hp.Choice("units", [2, 4, 8, 16])
        model = keras.Sequential(
            [keras.Input((4,)), keras.layers.Dense(units, "relu"),
             keras.layers.Dense(2)]
        )
        model.compile(
            "adam",
            keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=["accuracy"],
        )
        return model

    def fit(self, hp, model, *args, **kwargs):
        self.fits += 1
        if hp.get("units") in self.fail_units:
            raise ValueError(f"deliberate failure for units={hp['units']}")
        return model.fit(*args, **kwargs)


def search(tuner, epochs=1):
    x, y = dense_data()
    tuner.search(x, y, validation_data=dense_data(seed=1), epochs=epochs,
                 batch_size=16, verbose=0)


def test_a_raising_hypermodel_makes_the_search_raise(tmp_path):
    tuner = tuning.make_tuner(
        CountingHyperModel(fail_units=(2, 4, 8, 16)), max_trials=3,
        directory=str(tmp_path), objective="val_accuracy",
    )
    with pytest.raises(RuntimeError, match="deliberate failure"):
        search(tuner)
    assert tuner.hypermodel.fits == 1  # stopped at the first failure


def test_report_raises_when_every_trial_failed(tmp_path):
    # KerasTuner's default tolerance: the search returns normally.
    tuner = tuning.make_tuner(
        CountingHyperModel(fail_units=(2, 4, 8, 16)), max_trials=2,
        directory=str(tmp_path), objective="val_accuracy",
        max_consecutive_failed_trials=3,
    )
    search(tuner)
    assert tuner.hypermodel.fits == 2
    with pytest.raises(RuntimeError, match="No trial completed.*deliberate"):
        tuning.tuning_report(tuner, str(tmp_path / "report"))
    with pytest.raises(RuntimeError, match="No trial of this search"):
        tuner.get_best_hyperparameters()
    with pytest.raises(RuntimeError, match="No trial of this search"):
        tuner.get_best_models()


@pytest.mark.slow
def test_report_never_calls_a_failed_trial_best(tmp_path):
    tuner = tuning.make_tuner(
        CountingHyperModel(fail_units=(8, 16)), max_trials=4, seed=3,
        directory=str(tmp_path), objective="val_accuracy",
        max_consecutive_failed_trials=3,
    )
    search(tuner)
    report = tuning.tuning_report(tuner, str(tmp_path / "report"))
    statuses = {t["hyperparameters"]["units"]: t["status"]
                for t in report.trials}
    assert set(statuses) == {2, 4, 8, 16}
    assert [statuses[u] for u in (8, 16)] == ["FAILED"] * 2
    assert report.best["status"] == "COMPLETED"
    assert report.best["hyperparameters"]["units"] in (2, 4)
    assert {t["hyperparameters"]["units"] for t in report.failed} == {8, 16}
    best_hp = tuner.get_best_hyperparameters(num_trials=4)
    assert [hp["units"] in (2, 4) for hp in best_hp] == [True, True]
    markdown = (tmp_path / "report" / "tuning.md").read_text()
    assert markdown.count("| FAILED |") == 2
    assert "deliberate failure for units=8" in markdown
    assert (tmp_path / "report" / "tuning.png").stat().st_size > 0
    assert (tmp_path / "report" / "tuning.json").exists()


@pytest.mark.slow
def test_second_tuner_on_the_same_directory_does_not_retrain(
    tmp_path, capsys
):
    first = tuning.make_tuner(CountingHyperModel(), max_trials=2,
                              directory=str(tmp_path),
                              objective="val_accuracy")
    assert first.reloaded is False
    search(first)
    assert first.hypermodel.fits == 2
    capsys.readouterr()
    second = tuning.make_tuner(CountingHyperModel(), max_trials=2,
                               directory=str(tmp_path),
                               objective="val_accuracy")
    assert second.reloaded is True
    out = capsys.readouterr().out
    assert "reloaded the existing project" in out
    assert "search() will train nothing" in out
    search(second)
    assert second.hypermodel.fits == 0
    assert (
        second.get_best_hyperparameters()[0].values
        == first.get_best_hyperparameters()[0].values
    )
    third = tuning.make_tuner(CountingHyperModel(), max_trials=1,
                              directory=str(tmp_path), overwrite=True,
                              objective="val_accuracy")
    assert third.reloaded is False
    search(third)
    assert third.hypermodel.fits == 1


def test_objectives_get_an_explicit_direction():
    assert tuning.resolve_objective("val_logits_accuracy").direction == "max"
    assert tuning.resolve_objective("val_label_loss").direction == "min"
    assert tuning.resolve_objective("score").direction == "max"
    with pytest.raises(ValueError, match="keras_tuner.Objective"):
        tuning.resolve_objective("flops_fraction")
    objective = kt.Objective("flops_fraction", "min")
    assert tuning.resolve_objective(objective) is objective
    hypermodel = tuning.SoftFilterPruningHyperModel(tiny_conv)
    assert tuning.resolve_objective(None, hypermodel).name == "score"


def test_bad_arguments(tmp_path):
    hypermodel = CountingHyperModel()
    with pytest.raises(ValueError, match="`tuner` must be one of"):
        tuning.make_tuner(hypermodel, tuner="grid")
    with pytest.raises(ValueError, match="max_trials"):
        tuning.make_tuner(hypermodel, max_trials=0)
    with pytest.raises(ValueError, match="max_epochs"):
        tuning.make_tuner(hypermodel, tuner="hyperband",
                          directory=str(tmp_path))
    with pytest.raises(TypeError, match="hypermodel"):
        tuning.make_tuner(42)


@pytest.mark.tensorflow
def test_missing_tensorboard_names_the_extra(monkeypatch, tmp_path):
    for name in ("tensorboard", "tensorboard.plugins",
                 "tensorboard.plugins.hparams",
                 "tensorboard.plugins.hparams.api"):
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(ImportError, match=r"keras-dynfilt\[tuner\]"):
        tuning.make_tuner(CountingHyperModel(), directory=str(tmp_path))


def test_missing_keras_tuner_names_the_extra(monkeypatch):
    from keras_dynfilt.tuning import _dependencies

    monkeypatch.setitem(sys.modules, "keras_tuner", None)
    with pytest.raises(ImportError, match=r"keras-dynfilt\[tuner\]"):
        _dependencies.require_keras_tuner()


def test_keras_tuner_is_imported_by_the_tuning_package_only():
    # `import keras_dynfilt` must work without KerasTuner: no module outside
    # keras_dynfilt/tuning imports it, and the package does not import
    # keras_dynfilt.tuning.
    import ast
    import pathlib

    import keras_dynfilt

    root = pathlib.Path(keras_dynfilt.__file__).parent
    for path in root.rglob("*.py"):
        if "tuning" in path.relative_to(root).parts:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            names += [
                f"{node.module}.{a.name}" for a in node.names
            ] if isinstance(node, ast.ImportFrom) else []
            for name in names:
                assert not name.startswith("keras_tuner"), path
                assert "keras_dynfilt.tuning" not in name, path
    assert importlib.import_module("keras_dynfilt.tuning") is tuning


@pytest.mark.slow
@pytest.mark.tensorflow
def test_one_trial_under_mirrored_strategy(tmp_path):
    from keras_dynfilt.training import cpu_mirrored_strategy

    strategy = cpu_mirrored_strategy()
    assert strategy.num_replicas_in_sync == 2
    tuner = tuning.make_tuner(
        tuning.SoftFilterPruningHyperModel(tiny_conv), max_trials=1,
        directory=str(tmp_path), distribution_strategy=strategy,
    )
    x, y = image_data(32)
    tuner.search(x, y, validation_data=image_data(16, seed=1), epochs=1,
                 batch_size=16, verbose=0)
    report = tuning.tuning_report(tuner, str(tmp_path / "report"))
    assert [t["status"] for t in report.trials] == ["COMPLETED"]
    assert 0 < report.best["metrics"]["flops_fraction"] < 1
    model = tuner.get_best_models()[0]
    assert model.predict(x[:4], verbose=0).shape == (4, 3)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["bayesian", "hyperband"])
def test_bayesian_and_hyperband_tuners(kind, tmp_path):
    extra = {"max_epochs": 2, "factor": 3} if kind == "hyperband" else {}
    tuner = tuning.make_tuner(
        CountingHyperModel(), tuner=kind, max_trials=2,
        directory=str(tmp_path), objective="val_accuracy", **extra,
    )
    assert isinstance(
        tuner, kt.Hyperband if kind == "hyperband" else
        kt.BayesianOptimization
    )
    search(tuner, epochs=2)
    report = tuning.tuning_report(tuner, str(tmp_path / "report"))
    assert report.trials and not report.failed
    assert tuner.hypermodel.fits == len(report.trials)
