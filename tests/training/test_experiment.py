import json
import sys

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
        training.ExperimentRun.from_args(args)


@pytest.mark.tensorflow
def test_multi_worker_without_tf_config(tmp_path, monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    args = _args("--strategy", "multi_worker")
    args.output_dir = str(tmp_path)
    with pytest.raises(ValueError, match=r"TF_CONFIG.*multi_worker"):
        training.ExperimentRun.from_args(args)


def test_multi_worker_is_tensorflow_only(tmp_path):
    if keras.backend.backend() == "tensorflow":
        pytest.skip("TensorFlow has MultiWorkerMirroredStrategy")
    args = _args("--strategy", "multi_worker")
    args.output_dir = str(tmp_path)
    with pytest.raises(ValueError, match=r"multi_worker.*TensorFlow"):
        training.ExperimentRun.from_args(args)


def test_finish_without_training_writes_results(tmp_path):
    args = _args()
    args.output_dir = str(tmp_path)
    run = training.ExperimentRun.from_args(args)
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


def test_plot_history_without_matplotlib_warns(tmp_path, monkeypatch):
    # `None` in sys.modules makes `import matplotlib` raise ImportError.
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    path = str(tmp_path / "c.png")
    with pytest.warns(UserWarning, match=r"c\.png is not written.*\[plot\]"):
        assert training.plot_history({"loss": [1.0, 0.5]}, path) is None
    assert not (tmp_path / "c.png").exists()


def test_keyword_arguments_without_a_command_line(tmp_path):
    run = training.ExperimentRun(
        output_dir=tmp_path, dataset="digits", batch_size=16, seed=3,
        jit_compile=False, arguments={"epochs": 2, "width": 0.5},
    )
    assert run.jit_compile is False and run.num_replicas == 1
    results = run.finish()
    arguments = json.loads((tmp_path / "results.json").read_text())[
        "arguments"
    ]
    assert arguments == results["arguments"]
    assert arguments["dataset"] == "digits"
    assert (arguments["batch_size"], arguments["seed"]) == (16, 3)
    assert (arguments["epochs"], arguments["width"]) == (2, 0.5)
    assert results["jit_compile"]["requested"] is False


def test_from_args_records_every_flag(tmp_path):
    parser = training.example_argument_parser("t", dataset="digits")
    parser.add_argument("--depth", type=int, default=20)
    args = parser.parse_args(
        ["--output-dir", str(tmp_path), "--jit-compile", "false"]
    )
    run = training.ExperimentRun.from_args(args)
    assert run.jit_compile is False
    results = run.finish()
    assert results["arguments"] == vars(args)
    assert results["jit_compile"]["requested"] == "false"


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"batch_size": 0}, ValueError, r"`batch_size`.*batch_size=0"),
        ({"dataset": "imagenet"}, ValueError, r"`dataset`.*imagenet"),
        ({"strategy": "tpu"}, ValueError, r"`strategy`.*strategy='tpu'"),
        ({"jit_compile": "yes"}, ValueError, r"`jit_compile`.*'yes'"),
        ({"seed": -1}, ValueError, r"`seed`.*seed=-1"),
        ({"cpu_replicas": -1}, ValueError, r"`cpu_replicas`.*-1"),
        ({"limit_train": 0}, ValueError, r"`limit_train`.*limit_train=0"),
        ({"mixed_precision": "no"}, TypeError, r"`mixed_precision`.*'no'"),
        ({"arguments": [1]}, TypeError, r"`arguments`.*\[1\]"),
        ({"output_dir": 3}, TypeError, r"`output_dir`.*output_dir=3"),
    ],
)
def test_bad_keyword_arguments(tmp_path, kwargs, error, match):
    with pytest.raises(error, match=match):
        training.ExperimentRun(**{"output_dir": tmp_path, **kwargs})


def test_a_namespace_goes_through_from_args(tmp_path):
    with pytest.raises(TypeError, match="positional"):
        training.ExperimentRun(_args("--output-dir", str(tmp_path)))
