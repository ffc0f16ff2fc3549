"""Distribution strategies of the example flags, on every backend.

On TensorFlow, `--strategy` builds a `tf.distribute` strategy. On JAX,
`--strategy mirrored` (and `auto` with several accelerators) is Keras's own
`keras.distribution.DataParallel` over the visible devices. On PyTorch only
the default (one device) exists.
"""

import contextlib
import os

import keras
import numpy as np

STRATEGIES = ("auto", "default", "mirrored", "multi_worker")


def cpu_mirrored_strategy(devices=None):
    """`MirroredStrategy` over logical CPU devices, reducing on one device.

    Collective all-reduce (TensorFlow's default here) keys its ops per
    strategy object, and a second strategy in the same process collides with
    the first ("Shape mismatch in the collective instance 100"), after which
    every collective in the process is aborted. `ReductionToOneDevice` has no
    such state and costs nothing that matters on one host's CPUs.

    Args:
        devices: Device names; defaults to every logical CPU.
    """
    import tensorflow as tf

    if devices is None:
        devices = [d.name for d in tf.config.list_logical_devices("CPU")]
    return tf.distribute.MirroredStrategy(
        list(devices), cross_device_ops=tf.distribute.ReductionToOneDevice()
    )


class SingleDevice:
    """No distribution (JAX, PyTorch): `scope()` does nothing."""

    num_replicas_in_sync = 1

    def scope(self):
        return contextlib.nullcontext()


def _make_distribution(name):
    """`--strategy` on JAX and PyTorch: `keras.distribution` or none."""
    backend = keras.backend.backend()
    if name == "multi_worker":
        raise ValueError(
            "`--strategy multi_worker` is TensorFlow's "
            "MultiWorkerMirroredStrategy; the "
            f"{backend} backend has no such strategy here. Use 'mirrored' "
            "(JAX: keras.distribution.DataParallel) or 'default'. "
            "Received: strategy='multi_worker'"
        )
    if name == "default":
        return SingleDevice()
    if backend != "jax":
        if name == "mirrored":
            raise ValueError(
                "`--strategy mirrored` needs the TensorFlow backend "
                "(MirroredStrategy) or JAX (keras.distribution.DataParallel); "
                f"the {backend} backend has neither. Received: "
                "strategy='mirrored'"
            )
        return SingleDevice()
    devices = keras.distribution.list_devices()
    if name == "auto" and (
        len(devices) < 2 or all(d.startswith("cpu") for d in devices)
    ):
        # As on TensorFlow: distribute by default over accelerators only.
        return SingleDevice()
    return keras.distribution.DataParallel(devices=devices)


def num_replicas(strategy):
    """Replicas (devices) a batch is split over."""
    if isinstance(strategy, keras.distribution.DataParallel):
        return int(np.prod(strategy.device_mesh.shape))
    return strategy.num_replicas_in_sync


def _set_jax_cpu_devices(count):
    """JAX: `count` CPU devices, if its runtime has not started yet."""
    import jax

    try:
        jax.config.update("jax_num_cpu_devices", count)
    except RuntimeError:
        # Already started (e.g. XLA_FLAGS configured the devices early).
        pass


def split_cpu(count):
    """Splits the CPU into `count` logical devices, where still possible."""
    if count <= 1:
        return
    backend = keras.backend.backend()
    if backend == "jax":
        _set_jax_cpu_devices(count)
    elif backend == "tensorflow":
        import tensorflow as tf

        cpus = tf.config.list_physical_devices("CPU")
        try:
            tf.config.set_logical_device_configuration(
                cpus[0], [tf.config.LogicalDeviceConfiguration()] * count
            )
        except RuntimeError:
            # Already initialised (tests configure the devices early).
            pass


def make_strategy(name):
    """`--strategy` on the current backend: a strategy or distribution."""
    if keras.backend.backend() != "tensorflow":
        return _make_distribution(name)
    import tensorflow as tf

    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        if not tf.config.list_logical_devices("GPU"):
            # No GPU: mirror over the logical CPUs (see --cpu-replicas).
            return cpu_mirrored_strategy()
        return tf.distribute.MirroredStrategy()
    if name == "multi_worker":
        if "TF_CONFIG" not in os.environ:
            raise ValueError(
                "`--strategy multi_worker` reads the cluster from the "
                "TF_CONFIG environment variable, which is not set. "
                "Received: strategy='multi_worker'"
            )
        return tf.distribute.MultiWorkerMirroredStrategy()
    # auto: every local GPU when there are several, else the default.
    gpus = tf.config.list_logical_devices("GPU")
    if len(gpus) > 1:
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def enable_determinism(backend):
    """Deterministic ops on `backend` (process-wide)."""
    if backend == "tensorflow":
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()
    elif backend == "torch":
        import torch

        torch.use_deterministic_algorithms(True)
    elif backend == "jax":
        # XLA on CPU is deterministic; on GPU the flag must be there before
        # JAX starts (it is read once).
        flags = os.environ.get("XLA_FLAGS", "")
        if "xla_gpu_deterministic_ops" not in flags:
            os.environ["XLA_FLAGS"] = (
                flags + " --xla_gpu_deterministic_ops=true"
            ).strip()
