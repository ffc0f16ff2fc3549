import json

import keras
import pytest

from keras_dynfilt import training


def _args(*extra):
    parser = training.example_argument_parser("t", dataset="digits")
    return parser.parse_args(["--output-dir", "unused", *extra])


def test_parser_has_the_shared_flags():
    args = _args()
    for flag in ("dataset", "data_dir", "epochs", "batch_size", "seed",
                 "strategy", "jit_compile", "mixed_precision",
                 "deterministic", "output_dir", "steps_per_epoch",
                 "cpu_replicas", "limit_train"):
        assert hasattr(args, flag), flag
    with pytest.raises(SystemExit):
        training.example_argument_parser("t").parse_args(
            ["--strategy", "tpu"]
        )


@pytest.mark.parametrize(
    "flags, match",
    [
        (["--epochs", "0"], r"`--epochs` must be a positive integer.*0"),
        (["--batch-size", "-2"], r"`--batch-size` must be.*-2"),
    ],
)
def test_invalid_flags(tmp_path, flags, match):
    args = _args(*flags)
    args.output_dir = str(tmp_path)
    with pytest.raises(ValueError, match=match):
        training.ExperimentRun(args)


@pytest.mark.tensorflow
def test_multi_worker_without_tf_config(tmp_path, monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    args = _args("--strategy", "multi_worker")
    args.output_dir = str(tmp_path)
    with pytest.raises(ValueError, match=r"TF_CONFIG.*multi_worker"):
        training.ExperimentRun(args)


def test_multi_worker_is_tensorflow_only(tmp_path):
    if keras.backend.backend() == "tensorflow":
        pytest.skip("TensorFlow has MultiWorkerMirroredStrategy")
    args = _args("--strategy", "multi_worker")
    args.output_dir = str(tmp_path)
    with pytest.raises(ValueError, match=r"multi_worker.*TensorFlow"):
        training.ExperimentRun(args)


def test_finish_without_training_writes_results(tmp_path):
    args = _args()
    args.output_dir = str(tmp_path)
    run = training.ExperimentRun(args)
    results = run.finish(extra={"note": "nothing trained"})
    on_disk = json.loads((tmp_path / "results.json").read_text())
    assert on_disk["note"] == "nothing trained"
    assert on_disk["arguments"]["dataset"] == "digits"
    assert results["num_replicas"] == 1
    assert results["backend"] == keras.backend.backend()
    assert on_disk["versions"][keras.backend.backend()]
    assert not (tmp_path / "learning_curves.png").exists()


def test_plot_history_with_sparse_validation(tmp_path):
    history = {"loss": [3.0, 2.0, 1.5, 1.0], "val_loss": [2.5, 1.2]}
    path = training.plot_history(history, str(tmp_path / "c.png"))
    assert (tmp_path / "c.png").stat().st_size > 1000
    assert path.endswith("c.png")
