"""`ExperimentRun`: one example run's set-up and its record.

The same settings work on every Keras backend. On TensorFlow, `strategy`
builds a `tf.distribute` strategy and `jit_compile=True` under several
replicas compiles the per-replica step with XLA (`replica_jit`). On JAX,
`strategy="mirrored"` (and `"auto"` with several accelerators) is Keras's
own `keras.distribution.DataParallel` over the visible devices, and
`jit_compile` is `model.compile(jit_compile=...)`, i.e. `jax.jit`. On
PyTorch only the default (one device) exists; `jit_compile=True` is
Keras's `torch.compile`.
"""

import json
import os
import platform
import sys
import time

import keras
import numpy as np

from keras_dynfilt._validation import check_bool, check_int, check_positive_int
from keras_dynfilt.training.arguments import example_argument_parser
from keras_dynfilt.training.datasets import DATASETS, load_image_data
from keras_dynfilt.training.plots import plot_history
from keras_dynfilt.training.run_record import (
    EpochTimer,
    backend_versions,
    devices,
    json_default,
)
from keras_dynfilt.training.strategies import (
    STRATEGIES,
    SingleDevice,
    cpu_mirrored_strategy,
    enable_determinism,
    make_strategy,
    num_replicas,
    split_cpu,
)

# The keyword arguments that are also `example_argument_parser`'s flags.
_SETTINGS = (
    "output_dir", "dataset", "data_dir", "batch_size", "seed", "strategy",
    "jit_compile", "mixed_precision", "deterministic", "cpu_replicas",
    "steps_per_epoch", "limit_train",
)
# `jit_compile` as given (the command line's strings too) -> Keras's value.
_JIT_COMPILE = {"auto": "auto", "true": True, "false": False,
                True: True, False: False}


class ExperimentRun:
    """One example run: set-up from the shared settings, then its record.

    Creating it seeds every generator, sets the dtype policy, op determinism
    and the logical CPU devices, and builds the distribution strategy; so
    create it before building any model. `finish` writes `results.json`
    (arguments, versions, devices and replicas, per-epoch history, test
    metrics, wall time, examples per second) and `learning_curves.png` into
    `output_dir`. A script built on `example_argument_parser` creates it
    from its parsed flags with `ExperimentRun.from_args(args)`.

    Args:
        output_dir: Folder for `results.json` and `learning_curves.png`
            (created if missing).
        dataset: What `load_data` loads: `"mnist"`, `"fashion_mnist"`,
            `"cifar10"`, `"digits"` or `"auto"` (see `load_image_data`).
        data_dir: Folder with the dataset's files (offline), or `None`.
        batch_size: Global batch size (all replicas together).
        seed: Seeds Python, NumPy, the backend and the shuffle.
        strategy: `"auto"`, `"default"`, `"mirrored"` or `"multi_worker"`
            (TensorFlow's `MultiWorkerMirroredStrategy`, from `TF_CONFIG`).
        jit_compile: `"auto"`, `True` or `False` (or the command line's
            `"true"` / `"false"`).
        mixed_precision: Use the `mixed_float16` dtype policy.
        deterministic: Deterministic ops (TensorFlow:
            `enable_op_determinism`; PyTorch: `use_deterministic_algorithms`;
            JAX on GPU: `--xla_gpu_deterministic_ops`).
        cpu_replicas: Split the CPU into this many logical devices (0 or 1:
            leave it as is; on JAX only before its runtime starts).
        steps_per_epoch: Steps of each epoch, when limited (for the
            examples-per-second figure); `None`: the whole split.
        limit_train: Keep only this many training examples, or `None`.
        arguments: Further entries of `results.json`'s `"arguments"` (a
            script's own settings, e.g. its number of epochs).

    Examples:

    A run on scikit-learn's digits, without a command line:

    >>> import tempfile
    >>> run = keras_dynfilt.training.ExperimentRun(
    ...     output_dir=tempfile.mkdtemp(), dataset="digits", batch_size=64,
    ...     limit_train=256, arguments={"epochs": 1})
    >>> data = run.load_data()
    >>> with run.strategy.scope():
    ...     model = keras.Sequential([
    ...         keras.Input(data.input_shape),
    ...         keras.layers.Flatten(),
    ...         keras.layers.Dense(data.num_classes),
    ...     ])
    ...     model = run.compile(
    ...         model, optimizer="adam",
    ...         loss=keras.losses.SparseCategoricalCrossentropy(
    ...             from_logits=True))
    >>> history = model.fit(
    ...     data.train, epochs=1, verbose=0, callbacks=run.callbacks(),
    ...     shuffle=False)
    >>> results = run.finish(history, plot=False)
    >>> results["arguments"]["epochs"], results["dataset"]["num_train"]
    (1, 256)
    >>> len(results["epoch_seconds"]), results["num_replicas"]
    (1, 1)
    """

    def __init__(
        self,
        *,
        output_dir,
        dataset="auto",
        data_dir=None,
        batch_size=128,
        seed=0,
        strategy="auto",
        jit_compile="auto",
        mixed_precision=False,
        deterministic=False,
        cpu_replicas=0,
        steps_per_epoch=None,
        limit_train=None,
        arguments=None,
    ):
        if not isinstance(output_dir, (str, os.PathLike)):
            raise TypeError(
                "`output_dir` must be a path (a string or os.PathLike). "
                f"Received: output_dir={output_dir!r}"
            )
        if dataset not in (*DATASETS, "auto"):
            raise ValueError(
                f"`dataset` must be one of {list(DATASETS) + ['auto']}. "
                f"Received: dataset={dataset!r}"
            )
        check_positive_int(batch_size, "batch_size")
        check_int(seed, "seed", 0, 2**32 - 1)
        if strategy not in STRATEGIES:
            raise ValueError(
                f"`strategy` must be one of {list(STRATEGIES)}. "
                f"Received: strategy={strategy!r}"
            )
        if not (
            isinstance(jit_compile, bool)
            or jit_compile in ("auto", "true", "false")
        ):
            raise ValueError(
                "`jit_compile` must be 'auto', True or False. "
                f"Received: jit_compile={jit_compile!r}"
            )
        check_bool(mixed_precision, "mixed_precision")
        check_bool(deterministic, "deterministic")
        check_int(cpu_replicas, "cpu_replicas", 0)
        check_int(steps_per_epoch, "steps_per_epoch", 1, allow_none=True)
        check_int(limit_train, "limit_train", 1, None, allow_none=True)
        if arguments is not None and not isinstance(arguments, dict):
            raise TypeError(
                "`arguments` must be None or a dict. "
                f"Received: arguments={arguments!r}"
            )
        self.output_dir = os.fspath(output_dir)
        self.dataset = dataset
        self.data_dir = data_dir
        self.batch_size = batch_size
        self.seed = seed
        self.steps_per_epoch = steps_per_epoch
        self.limit_train = limit_train
        self.arguments = {
            "output_dir": self.output_dir,
            "dataset": dataset,
            "data_dir": data_dir,
            "batch_size": batch_size,
            "seed": seed,
            "strategy": strategy,
            "jit_compile": jit_compile,
            "mixed_precision": mixed_precision,
            "deterministic": deterministic,
            "cpu_replicas": cpu_replicas,
            "steps_per_epoch": steps_per_epoch,
            "limit_train": limit_train,
            **(arguments or {}),
        }
        self.backend = keras.backend.backend()
        self.start_time = time.perf_counter()
        split_cpu(cpu_replicas)
        keras.utils.set_random_seed(seed)
        if deterministic:
            enable_determinism(self.backend)
        if mixed_precision:
            keras.mixed_precision.set_global_policy("mixed_float16")
        self.strategy = make_strategy(strategy)
        self.num_replicas = num_replicas(self.strategy)
        if self.backend == "jax":
            # fit/evaluate run outside `strategy.scope()`: the distribution
            # is global for the run; `finish` clears it.
            keras.distribution.set_distribution(
                None if isinstance(self.strategy, SingleDevice)
                else self.strategy
            )
        self._jit_requested = jit_compile
        self.jit_compile = _JIT_COMPILE[jit_compile]
        os.makedirs(self.output_dir, exist_ok=True)
        self._timer = EpochTimer()
        self.data = None
        self.model = None

    @classmethod
    def from_args(cls, args):
        """An `ExperimentRun` from `example_argument_parser`'s parsed flags.

        Every flag, the script's own included, is recorded under
        `"arguments"` in `results.json`.

        Args:
            args: The `argparse.Namespace` of
                `example_argument_parser(...).parse_args()`.
        """
        # Checked here with the flags' names, which a command-line user
        # knows, before the keyword checks of `__init__`.
        for flag in ("epochs", "batch_size"):
            value = getattr(args, flag)
            if value < 1:
                raise ValueError(
                    f"`--{flag.replace('_', '-')}` must be a positive "
                    f"integer. Received: {value}"
                )
        settings = {name: getattr(args, name) for name in _SETTINGS}
        return cls(**settings, arguments=vars(args))

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
        """Loads `dataset` as an `ImageData` batched by the global batch."""
        self.data = load_image_data(
            self.dataset,
            batch_size=self.batch_size,
            data_dir=self.data_dir,
            seed=self.seed,
            map_fn=map_fn,
            augment=augment,
            limit_train=self.limit_train,
            **(
                {}
                if self.backend == "tensorflow"
                else {"batch_multiple": self.num_replicas}
            ),
        )
        return self.data

    def compile(self, model, **compile_kwargs):
        """`model.compile(**compile_kwargs)` with `jit_compile` applied.

        Under a strategy with several replicas and `jit_compile=True`, the
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
                **backend_versions(),
                "numpy": np.__version__,
                "python": platform.python_version(),
            },
            "backend": keras.backend.backend(),
            "devices": devices(),
            "strategy": type(self.strategy).__name__,
            "num_replicas": self.num_replicas,
            "jit_compile": {
                "requested": self._jit_requested,
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
            steps = self.steps_per_epoch
            per_epoch = (
                min(self.data.num_train, steps * self.batch_size)
                if steps
                else self.data.num_train
            )
            examples = per_epoch * len(epoch_seconds) / sum(epoch_seconds)
        results = {
            "arguments": dict(self.arguments),
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
            path = os.path.join(self.output_dir, "results.json")
            with open(path, "w") as f:
                json.dump(results, f, indent=2, default=json_default)
            if plot and hist:
                plot_history(
                    hist, os.path.join(self.output_dir, "learning_curves.png")
                )
        return results


# Importable from here as before the split.
__all__ = [
    "ExperimentRun",
    "cpu_mirrored_strategy",
    "example_argument_parser",
    "plot_history",
]
