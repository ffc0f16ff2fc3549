"""Test configuration shared by the whole suite.

TensorFlow's logical devices can only be configured before TensorFlow
initialises its runtime, so the two logical CPUs that the MirroredStrategy
tests use are set up here, at import time, before any test module runs.
"""

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

NUM_LOGICAL_CPUS = 2

if keras.backend.backend() == "tensorflow":
    import tensorflow as tf

    _cpus = tf.config.list_physical_devices("CPU")
    tf.config.set_logical_device_configuration(
        _cpus[0],
        [tf.config.LogicalDeviceConfiguration()] * NUM_LOGICAL_CPUS,
    )



def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "tensorflow: needs the TensorFlow backend (skipped on the others)",
    )


def pytest_collection_modifyitems(config, items):
    if keras.backend.backend() == "tensorflow":
        return
    skip = pytest.mark.skip(reason="needs the TensorFlow backend")
    for item in items:
        if "tensorflow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _fresh_keras_state():
    """Each test starts seeded, in float32, from a clear Keras session.

    `free_memory=False` skips the full `gc.collect()` Keras would run: with
    TensorFlow and the test modules loaded it costs 0.2-0.5 s, which over
    ~840 tests was 40% of the suite's time. Python's own collector still
    runs; nothing a test checks depends on when cyclic garbage is freed.
    """
    keras.backend.clear_session(free_memory=False)
    keras.utils.set_random_seed(1337)
    policy = keras.config.dtype_policy()
    yield
    keras.config.set_dtype_policy(policy)
    if keras.backend.backend() == "jax":
        # An example run under `--strategy mirrored` sets a global
        # keras.distribution; it must not reach the next test.
        keras.distribution.set_distribution(None)
    if keras.backend.backend() == "tensorflow":
        # `--deterministic` runs enable op determinism process-wide; it
        # changes how TensorFlow compiles, so it must not leak into others.
        from tensorflow.python.framework import config as tf_config

        tf_config.disable_op_determinism()


@pytest.fixture
def rng():
    return np.random.default_rng(1337)
