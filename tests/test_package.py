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
