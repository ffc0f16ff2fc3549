"""The command line and the run record shared by every example script.

The same flags work on every Keras backend. On TensorFlow, `--strategy`
builds a `tf.distribute` strategy and `--jit-compile true` under several
replicas compiles the per-replica step with XLA (`replica_jit`). On JAX,
`--strategy mirrored` (and `auto` with several accelerators) is Keras's own
`keras.distribution.DataParallel` over the visible devices, and
`--jit-compile` is `model.compile(jit_compile=...)`, i.e. `jax.jit`. On
PyTorch only the default (one device) exists; `--jit-compile true` is
Keras's `torch.compile`.
"""

import argparse
import contextlib
import importlib.metadata
import json
import os
import platform
import sys
import time

import keras
import numpy as np

from keras_dynfilt.training.datasets import DATASETS, load_image_data

STRATEGIES = ("auto", "default", "mirrored", "multi_worker")


def example_argument_parser(
    description, dataset="auto", epochs=10, batch_size=128, output_dir=None
):
    """An `argparse.ArgumentParser` with the flags every example shares.

    `--dataset`, `--data-dir`, `--epochs`, `--batch-size` (global, split
    across replicas), `--seed`, `--strategy {auto,default,mirrored,
    multi_worker}`, `--cpu-replicas N` (split the CPU into N logical devices,
    for trying MirroredStrategy without GPUs), `--jit-compile
    {auto,true,false}`, `--mixed-precision`, `--deterministic`,
    `--output-dir`, `--steps-per-epoch` and `--limit-train` (for smoke runs)
    and `--verbose`. Scripts add their own flags to the returned parser.
    """
    parser = argparse.ArgumentParser(
        description=description,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--dataset",
        default=dataset,
        choices=list(DATASETS) + ["auto"],
        help="'auto': Fashion-MNIST from Debian's package when installed, "
        "else scikit-learn's digits",
    )
    parser.add_argument(
        "--data-dir",
        default=None,
        help="folder with the dataset's files (offline); default: Debian's "
        "Fashion-MNIST folder when present, else tensorflow-datasets online",
    )
    parser.add_argument("--epochs", type=int, default=epochs)
    parser.add_argument(
        "--batch-size",
        type=int,
        default=batch_size,
        help="global batch size (all replicas together)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--strategy", default="auto", choices=STRATEGIES)
    parser.add_argument(
        "--cpu-replicas",
        type=int,
        default=0,
        help="split the CPU into this many logical devices (0: leave as is; "
        "on JAX only before JAX starts its runtime)",
    )
    parser.add_argument(
        "--jit-compile",
        default="auto",
        choices=("auto", "true", "false"),
        help="XLA; 'auto' resolves as Keras does (off on CPU)",
    )
    parser.add_argument("--mixed-precision", action="store_true")
    parser.add_argument(
        "--deterministic",
        action="store_true",
        help="deterministic ops (TensorFlow: enable_op_determinism; "
        "PyTorch: use_deterministic_algorithms; JAX on GPU: "
        "--xla_gpu_deterministic_ops)",
    )
    parser.add_argument(
        "--output-dir", default=output_dir or os.path.join("runs", "latest")
    )
    parser.add_argument(
        "--steps-per-epoch",
        type=int,
        default=None,
        help="limit each epoch (smoke runs)",
    )
    parser.add_argument(
        "--limit-train",
        type=int,
        default=None,
        help="use only this many training examples (smoke runs)",
    )
    parser.add_argument("--verbose", type=int, default=2, choices=(0, 1, 2))
    return parser


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


def _num_replicas(strategy):
    if isinstance(strategy, keras.distribution.DataParallel):
        return int(np.prod(strategy.device_mesh.shape))
    return strategy.num_replicas_in_sync


def _set_cpu_devices(count):
    """JAX: `count` CPU devices, if its runtime has not started yet."""
    import jax

    try:
        jax.config.update("jax_num_cpu_devices", count)
    except RuntimeError:
        # Already started (e.g. XLA_FLAGS configured the devices early).
        pass


def _backend_versions():
    """Versions of the installed backends, without importing any."""
    versions = {}
    for package, dists in (
        ("tensorflow", ("tensorflow", "tensorflow-cpu")),
        ("jax", ("jax",)),
        ("torch", ("torch",)),
    ):
        module = sys.modules.get(package)
        versions[package] = getattr(module, "__version__", None)
        for dist in dists:
            if versions[package]:
                break
            try:
                versions[package] = importlib.metadata.version(dist)
            except importlib.metadata.PackageNotFoundError:
                pass
    return versions


def _devices():
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        return [d.name for d in tf.config.list_logical_devices()]
    if backend == "jax":
        import jax

        return [str(d) for d in jax.devices()]
    if backend == "torch":
        import torch

        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        return ["cpu"] + [f"cuda:{i}" for i in range(count)]
    return []


def _make_strategy(name):
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


class _EpochTimer(keras.callbacks.Callback):
    """Wall time of each epoch's training part (without validation)."""

    def on_train_begin(self, logs=None):
        self.epoch_seconds = []

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_test_begin(self, logs=None):
        if hasattr(self, "_start"):
            self.epoch_seconds.append(time.perf_counter() - self._start)
            del self._start

    def on_epoch_end(self, epoch, logs=None):
        if hasattr(self, "_start"):
            self.epoch_seconds.append(time.perf_counter() - self._start)
            del self._start


class ExperimentRun:
    """One example run: set-up from the shared flags, then its record.

    Creating it seeds every generator, sets the dtype policy, op determinism
    and the logical CPU devices, and builds the distribution strategy; so
    create it before building any model. `finish` writes `results.json`
    (arguments, versions, devices and replicas, per-epoch history, test
    metrics, wall time, examples per second) and `learning_curves.png` into
    `--output-dir`.

    Args:
        args: The parsed `argparse.Namespace` of `example_argument_parser`.
    """

    def __init__(self, args):
        self.args = args
        self.backend = keras.backend.backend()
        self.start_time = time.perf_counter()
        for flag in ("epochs", "batch_size"):
            value = getattr(args, flag)
            if value < 1:
                raise ValueError(
                    f"`--{flag.replace('_', '-')}` must be a positive "
                    f"integer. Received: {value}"
                )
        if self.backend == "jax" and args.cpu_replicas > 1:
            _set_cpu_devices(args.cpu_replicas)
        if self.backend == "tensorflow" and args.cpu_replicas > 1:
            import tensorflow as tf

            cpus = tf.config.list_physical_devices("CPU")
            try:
                tf.config.set_logical_device_configuration(
                    cpus[0],
                    [tf.config.LogicalDeviceConfiguration()]
                    * args.cpu_replicas,
                )
            except RuntimeError:
                # Already initialised (tests configure the devices early).
                pass
        keras.utils.set_random_seed(args.seed)
        if args.deterministic:
            _enable_determinism(self.backend)
        if args.mixed_precision:
            keras.mixed_precision.set_global_policy("mixed_float16")
        self.strategy = _make_strategy(args.strategy)
        self.num_replicas = _num_replicas(self.strategy)
        if self.backend == "jax":
            # fit/evaluate run outside `strategy.scope()`: the distribution
            # is global for the run; `finish` clears it.
            keras.distribution.set_distribution(
                None if isinstance(self.strategy, SingleDevice)
                else self.strategy
            )
        self.jit_compile = {"auto": "auto", "true": True, "false": False}[
            args.jit_compile
        ]
        os.makedirs(args.output_dir, exist_ok=True)
        self._timer = _EpochTimer()
        self.data = None
        self.model = None

    @property
    def is_chief(self):
        """False on non-chief workers of a multi-worker run."""
        resolver = getattr(self.strategy, "cluster_resolver", None)
        if resolver is None or not resolver.task_type:
            return True
        return resolver.task_type == "chief" or (
            resolver.task_type == "worker" and resolver.task_id == 0
        )

    def load_data(self, map_fn=None, augment=None):
        """Loads `--dataset` as an `ImageData` batched by the global batch."""
        self.data = load_image_data(
            self.args.dataset,
            batch_size=self.args.batch_size,
            data_dir=self.args.data_dir,
            seed=self.args.seed,
            map_fn=map_fn,
            augment=augment,
            limit_train=self.args.limit_train,
            **(
                {}
                if self.backend == "tensorflow"
                else {"batch_multiple": self.num_replicas}
            ),
        )
        return self.data

    def compile(self, model, **compile_kwargs):
        """`model.compile(**compile_kwargs)` with `--jit-compile` applied.

        Under a strategy with several replicas and `--jit-compile true`, the
        per-replica step is compiled with XLA and the all-reduce runs outside
        it (`keras_dynfilt.training.compile_replica_jit`); Keras alone fails
        there (keras-team/keras#19005). Call it under `strategy.scope()`.
        On JAX and PyTorch it is `model.compile(jit_compile=...)`: the
        backend's own jit (`jax.jit`, `torch.compile`).
        """
        if self.backend != "tensorflow":
            model.compile(jit_compile=self.jit_compile, **compile_kwargs)
            self.model = model
            return model
        from keras_dynfilt.training.replica_jit import compile_replica_jit

        compile_replica_jit(
            model, jit_compile=self.jit_compile, **compile_kwargs
        )
        self.model = model
        return model

    def callbacks(self, extra=()):
        """Callbacks every run uses (epoch timing), plus `extra`."""
        return [self._timer, *extra]

    def describe(self):
        """Versions, devices and strategy, as recorded in `results.json`."""
        import keras_dynfilt

        model = self.model
        return {
            "versions": {
                "keras_dynfilt": keras_dynfilt.__version__,
                "keras": keras.__version__,
                **_backend_versions(),
                "numpy": np.__version__,
                "python": platform.python_version(),
            },
            "backend": keras.backend.backend(),
            "devices": _devices(),
            "strategy": type(self.strategy).__name__,
            "num_replicas": self.num_replicas,
            "jit_compile": {
                "requested": self.args.jit_compile,
                "resolved": None if model is None else model.jit_compile,
                "per_replica_xla": bool(getattr(model, "_replica_jit", False)),
            },
            "dtype_policy": keras.config.dtype_policy().name,
            "platform": platform.platform(),
            "command": " ".join([os.path.basename(sys.executable)] + sys.argv),
        }

    def finish(self, history=None, test_metrics=None, extra=None, plot=True):
        """Writes `results.json` (and the learning-curve PNG); returns it."""
        wall = time.perf_counter() - self.start_time
        if self.backend == "jax":
            keras.distribution.set_distribution(None)
        hist = (
            {}
            if history is None
            else {
                k: [float(v) for v in vals]
                for k, vals in history.history.items()
            }
        )
        epoch_seconds = list(getattr(self._timer, "epoch_seconds", []))
        examples = None
        if self.data is not None and epoch_seconds:
            steps = self.args.steps_per_epoch
            per_epoch = (
                min(self.data.num_train, steps * self.args.batch_size)
                if steps
                else self.data.num_train
            )
            examples = per_epoch * len(epoch_seconds) / sum(epoch_seconds)
        results = {
            "arguments": vars(self.args),
            **self.describe(),
            "dataset": None
            if self.data is None
            else {
                "name": self.data.name,
                "source": self.data.source,
                "num_train": self.data.num_train,
                "num_test": self.data.num_test,
                "input_shape": list(self.data.input_shape),
                "num_classes": self.data.num_classes,
            },
            "history": hist,
            "epoch_seconds": epoch_seconds,
            "test": {k: float(v) for k, v in (test_metrics or {}).items()},
            "wall_seconds": wall,
            "train_examples_per_second": examples,
            **(extra or {}),
        }
        if self.is_chief:
            path = os.path.join(self.args.output_dir, "results.json")
            with open(path, "w") as f:
                json.dump(results, f, indent=2, default=_json_default)
            if plot and hist:
                plot_history(
                    hist,
                    os.path.join(self.args.output_dir, "learning_curves.png"),
                )
        return results


def _enable_determinism(backend):
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


def _json_default(value):
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


def plot_history(history, path, title=None):
    """Saves a PNG of every metric of a Keras history dict, train vs val."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.ticker import MaxNLocator
    except ImportError:  # matplotlib is the `plot` extra
        return None
    names = [k for k in history if not k.startswith("val_")]
    fig, axes = plt.subplots(
        1, len(names), figsize=(4 * len(names), 3.2), squeeze=False
    )
    for ax, name in zip(axes[0], names):
        epochs = np.arange(1, len(history[name]) + 1)
        ax.plot(epochs, history[name], marker="o", label="train")
        val = history.get(f"val_{name}")
        if val:
            # With `validation_freq=k` there are fewer validation points:
            # they belong to every k-th epoch, ending at the last one.
            step = max(1, len(epochs) // len(val))
            val_epochs = epochs[step - 1 :: step][: len(val)]
            ax.plot(val_epochs, val, marker="o", label="test")
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(name)
        ax.grid(alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
