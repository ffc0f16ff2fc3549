"""The four hypermodels: the papers' defaults, space/fixed, real searches."""

import keras
import numpy as np
import pytest

from keras_dynfilt import tuning  # noqa: E402
from keras_dynfilt.callbacks import SoftFilterPruning  # noqa: E402
from tests.tuning.common import image_data, kt, tiny_conv  # noqa: E402

PAPER = {
    "filter_generation": {
        "encoder_filters": 20,
        "repository_size": 5,
        "learning_rate": 1e-3,
    },
    "wsoftmax": {"alpha": 1.5, "fc_multiple": 1, "softmax_first": True},
    "nddr": {
        "init": "diagonal",
        "nddr_alpha": 0.9,
        "lr_multiplier": 100.0,
        "weight_decay": 5e-4,
    },
    "sfp": {"pruning_rate": 0.3, "criterion": "l2", "frequency": 1},
}


def make(kind, **kwargs):
    """A hypermodel of each kind, sized for 8x8 images and 3 classes."""
    if kind == "filter_generation":
        return tuning.FilterGenerationHyperModel(
            (8, 8, 1), 3, filters=(4,), kernel_size=3, **kwargs
        )
    if kind == "wsoftmax":
        return tuning.WSoftmaxHyperModel((8, 8, 1), 3, channels=4, **kwargs)
    if kind == "nddr":
        return tuning.NDDRHyperModel((8, 8, 1), (3, 2), widths=(4, 8),
                                     **kwargs)
    return tuning.SoftFilterPruningHyperModel(
        lambda: tiny_conv(), flops_weight=0.1, **kwargs
    )


def fit_data(kind, seed):
    x, y = image_data(32, seed=seed)
    if kind == "nddr":
        return x, [y, (y % 2).astype("int32")]
    return x, y


@pytest.mark.parametrize("kind", list(PAPER))
def test_defaults_are_the_papers(kind):
    hypermodel = make(kind)
    assert hypermodel.paper_defaults() == PAPER[kind]
    hp = kt.HyperParameters()
    hypermodel.build(hp)
    assert hp.values == PAPER[kind]


def test_defaults_reach_the_models():
    hp = kt.HyperParameters()
    model = tuning.FilterGenerationHyperModel((28, 28, 1), 10).build(hp)
    assert model.get_layer("enc1_conv").filters == 20
    assert model.get_layer("conv1").repository_size == 5
    assert float(model.optimizer.learning_rate) == pytest.approx(1e-3)

    model = tuning.WSoftmaxHyperModel((28, 28, 1), 10).build(
        kt.HyperParameters()
    )
    assert model.get_layer("fc").units == 9  # K - 1
    assert model.get_layer("head").alpha == 0.0  # softmax first

    model = tuning.NDDRHyperModel((16, 16, 1), (10, 4)).build(
        kt.HyperParameters()
    )
    nddr = model.get_layer("nddr_1")
    assert (nddr.alpha, nddr.beta, nddr.lr_multiplier) == (0.9, 0.1, 100.0)
    assert nddr.kernel_regularizer.l2 == pytest.approx(2.5e-4)

    # The SFP defaults are the callback's (the paper's CIFAR ResNet rate).
    callback = SoftFilterPruning()
    assert (callback.pruning_rate, callback.criterion, callback.frequency) == (
        PAPER["sfp"]["pruning_rate"],
        PAPER["sfp"]["criterion"],
        PAPER["sfp"]["frequency"],
    )


def test_space_and_fixed():
    hypermodel = tuning.WSoftmaxHyperModel(
        (8, 8, 1), 3, space={"alpha": [0.5, 1.0]},
        fixed={"softmax_first": False},
    )
    hp = kt.HyperParameters()
    model = hypermodel.build(hp)
    assert hp.values["alpha"] == 0.5  # 1.5 is outside the new range
    assert hp.values["softmax_first"] is False
    assert model.get_layer("head").alpha == 0.5
    assert hp.get_config()["space"][0]["config"]["values"] == [0.5, 1.0]

    sfp = tuning.SoftFilterPruningHyperModel(
        tiny_conv, space={"pruning_rate": (0.2, 0.5)}
    )
    hp = kt.HyperParameters()
    sfp.build(hp)
    rate = hp.get_config()["space"][0]["config"]
    assert (rate["min_value"], rate["max_value"]) == (0.2, 0.5)
    assert hp.values["pruning_rate"] == 0.3


def test_bad_arguments():
    with pytest.raises(ValueError, match="unknown hyperparameters"):
        tuning.WSoftmaxHyperModel((8, 8, 1), 3, space={"beta": [1]})
    with pytest.raises(ValueError, match="unknown hyperparameters"):
        tuning.NDDRHyperModel((8, 8, 1), (3, 2), fixed={"alpha": 0.5})
    with pytest.raises(TypeError, match="space"):
        tuning.WSoftmaxHyperModel((8, 8, 1), 3, space=[("alpha", 1)])
    with pytest.raises(ValueError, match="task_classes"):
        tuning.NDDRHyperModel((8, 8, 1), (3,))
    with pytest.raises(TypeError, match="build_model"):
        tuning.SoftFilterPruningHyperModel("resnet")
    with pytest.raises(ValueError, match="reference_accuracy"):
        tuning.SoftFilterPruningHyperModel(tiny_conv, max_accuracy_drop=0.01)
    with pytest.raises(ValueError, match="in \\[0, 1\\]"):
        tuning.FilterGenerationHyperModel((8, 8, 1), 3, filters=(4,),
                                          kernel_size=3).fit(
            kt.HyperParameters(), None, np.full((4, 8, 8, 1), 255.0),
            np.zeros(4, "int32"))


def test_sfp_scores():
    hypermodel = tuning.SoftFilterPruningHyperModel(tiny_conv,
                                                    flops_weight=0.5)
    assert hypermodel.score(0.9, 40, 100) == pytest.approx(0.9 - 0.5 * 0.4)
    budget = tuning.SoftFilterPruningHyperModel(tiny_conv, macs_budget=50)
    assert budget.score(0.8, 50, 100) == 0.8
    assert budget.score(0.99, 60, 100) < 0
    drop = tuning.SoftFilterPruningHyperModel(
        tiny_conv, max_accuracy_drop=0.01, reference_accuracy=0.9
    )
    assert drop.score(0.895, 30, 100) == pytest.approx(0.7)
    assert drop.score(0.85, 10, 100) < drop.score(0.895, 90, 100)


@pytest.fixture(scope="module", params=list(PAPER))
def searched(request, tmp_path_factory):
    kind = request.param
    keras.utils.set_random_seed(0)
    tuner = tuning.make_tuner(
        make(kind), max_trials=2, seed=1,
        directory=str(tmp_path_factory.mktemp(kind)),
    )
    x, y = fit_data(kind, 0)
    validation = fit_data(kind, 1)
    # Two epochs: the W-Softmax softmax-first phase is then one epoch.
    tuner.search(x, y, validation_data=validation,
                 epochs=2 if kind == "wsoftmax" else 1, batch_size=16,
                 verbose=0)
    return kind, tuner


@pytest.mark.slow
def test_two_trial_search_completes_and_best_model_predicts(searched,
                                                             tmp_path):
    kind, tuner = searched
    report = tuning.tuning_report(tuner, str(tmp_path))
    assert [t["status"] for t in report.trials] == ["COMPLETED"] * 2
    assert all(t["objective"] is not None for t in report.trials)
    assert all(t["seconds"] > 0 and t["runs"] == 1 for t in report.trials)
    assert len({str(t["hyperparameters"]) for t in report.trials}) == 2
    model = tuner.get_best_models()[0]
    x, _ = image_data(5, seed=2)
    if kind == "wsoftmax":
        outputs = [
            model.predict({"images": x, "labels": None}, verbose=0),
            tuning.WSoftmaxHyperModel.inference_model(model).predict(
                x, verbose=0),
        ]
        np.testing.assert_allclose(outputs[0], outputs[1], rtol=1e-5)
    else:
        outputs = model.predict(x, verbose=0)
        outputs = list(outputs.values()) if isinstance(
            outputs, dict) else outputs
        outputs = outputs if isinstance(outputs, list) else [outputs]
    for output in outputs:
        assert output.shape[0] == 5 and np.all(np.isfinite(output))
    if kind == "sfp":
        metrics = report.best["metrics"]
        assert 0 < metrics["flops_fraction"] < 1
        assert metrics["macs"] < metrics["full_macs"]
        # The checkpoint is the masked model: it compacts to those MACs.
        small = keras_dynfilt_compact(model)
        assert keras_dynfilt_cost(small) == metrics["macs"]


def keras_dynfilt_compact(model):
    from keras_dynfilt.pruning import compact

    return compact(model)


def keras_dynfilt_cost(model):
    from keras_dynfilt.pruning import model_cost

    return model_cost(model).macs
