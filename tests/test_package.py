"""The installed-package contract: one clear error without a backend, no
optional dependency pulled in by `import keras_dynfilt`."""

import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _python(code, **env):
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), **env},
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.parametrize("backend", ["tensorflow", "jax", "torch"])
def test_missing_backend_names_the_extras(backend):
    module = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}
    # `sys.modules[name] = None` makes `import name` fail as if not installed.
    proc = _python(
        f"import sys; sys.modules[{module[backend]!r}] = None\n"
        "import keras_dynfilt",
        KERAS_BACKEND=backend,
    )
    assert proc.returncode != 0
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("ImportError: keras-dynfilt found no Keras backend")
    for extra in ("[tensorflow]", "[tensorflow-cpu]", "[jax]"):
        assert extra in last
    assert f"KERAS_BACKEND={backend}" in last


def test_import_pulls_no_optional_dependency():
    # Measured beyond Keras: Keras on TensorFlow imports some of these itself.
    proc = _python(
        "import sys, keras\n"
        "before = set(sys.modules)\n"
        "import keras_dynfilt\n"
        "heavy = ['sklearn', 'keras_tuner', 'matplotlib', "
        "'tensorflow_datasets', 'tensorflow_model_optimization', "
        "'keras_dynfilt.cross_task', 'keras_dynfilt.tuning']\n"
        "print([m for m in heavy if m in set(sys.modules) - before])"
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "[]"


def test_private_keras_names_resolve():
    import keras

    from keras_dynfilt._keras_private import Functional

    inputs = keras.Input((2,))
    model = keras.Model(inputs, keras.layers.Dense(1)(inputs))
    assert type(model) is Functional


def test_missing_backend_points_at_the_installed_one(tmp_path):
    # `pip install ".[jax]"` then `import keras_dynfilt` with KERAS_BACKEND
    # unset: Keras wants TensorFlow, jax is there. The environment is
    # controlled: TensorFlow hidden, an importable `jax` package on the path
    # (found by importlib, never imported), no keras.json.
    (tmp_path / "fake" / "jax").mkdir(parents=True)
    (tmp_path / "fake" / "jax" / "__init__.py").write_text("")
    env = {k: v for k, v in os.environ.items() if k != "KERAS_BACKEND"}
    env.update(
        PYTHONPATH=os.pathsep.join([str(tmp_path / "fake"), str(ROOT)]),
        KERAS_HOME=str(tmp_path / "keras_home"),
    )
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; sys.modules['tensorflow'] = None\n"
            "import keras_dynfilt",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode != 0
    last = proc.stderr.strip().splitlines()[-1]
    assert "Keras wants the 'tensorflow' backend (KERAS_BACKEND=<unset>" in last
    assert "jax is installed: set KERAS_BACKEND=jax" in last


@pytest.mark.parametrize(
    "installed, expected",
    [
        (["jax"], "jax is installed: set KERAS_BACKEND=jax"),
        (["torch"], "torch is installed: set KERAS_BACKEND=torch"),
        ([], None),
    ],
)
def test_missing_backend_message(installed, expected):
    from keras_dynfilt._backend import missing_backend_message

    message = missing_backend_message(
        "tensorflow", None, "tensorflow", installed
    )
    assert message.startswith("keras-dynfilt found no Keras backend")
    assert "[jax]" in message and "[tensorflow]" in message
    if expected:
        assert expected in message
    else:
        assert "is installed: set KERAS_BACKEND" not in message
