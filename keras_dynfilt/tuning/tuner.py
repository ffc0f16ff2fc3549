"""`make_tuner`: a KerasTuner tuner that fails fast and says what it does."""

import json
import numbers
import os
import time
import warnings
import zlib

import keras

from keras_dynfilt.tuning._dependencies import (
    check_tensorboard,
    require_keras_tuner,
)

kt = require_keras_tuner()

TUNERS = ("random", "bayesian", "hyperband")
RUNS_FILE_PREFIX = "keras_dynfilt_runs_"

_MAXIMIZED = ("accuracy", "acc", "auc", "precision", "recall", "score", "f1")
_MINIMIZED = ("loss", "error", "mse", "mae", "crossentropy")


def resolve_objective(objective, hypermodel=None):
    """A `keras_tuner.Objective` with an explicit direction.

    KerasTuner infers the direction only for metric names it knows (it
    cannot for `val_logits_accuracy`, `flops_fraction` or a combined
    score). A string is resolved here by its ending (`...accuracy`,
    `...auc`, `...score` are maximised, `...loss`, `...error` minimised);
    anything else must be a `keras_tuner.Objective(name, direction)`.
    `None` takes the hypermodel's `objective`, else `val_loss` (min).
    """
    if objective is None:
        objective = getattr(hypermodel, "objective", None)
        if objective is None:
            return kt.Objective("val_loss", "min")
    if isinstance(objective, kt.Objective):
        if objective.direction not in ("min", "max"):
            raise ValueError(
                "`objective.direction` must be 'min' or 'max'. Received: "
                f"{objective.direction!r}"
            )
        return objective
    if isinstance(objective, (list, tuple)):
        return [resolve_objective(o) for o in objective]
    if isinstance(objective, str):
        name = objective.lower()
        if name.endswith(_MAXIMIZED):
            return kt.Objective(objective, "max")
        if name.endswith(_MINIMIZED):
            return kt.Objective(objective, "min")
        raise ValueError(
            f"Cannot tell whether objective {objective!r} is to be "
            "maximised or minimised. Pass keras_tuner.Objective("
            f"{objective!r}, 'max') or keras_tuner.Objective({objective!r}, "
            "'min')."
        )
    raise TypeError(
        "`objective` must be a metric name, a keras_tuner.Objective or a "
        f"list of them. Received: objective={objective!r}"
    )


def _check_positive_int(value, name, allow_none=False):
    if allow_none and value is None:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Integral)
        or value < 1
    ):
        raise ValueError(
            f"`{name}` must be a positive integer. Received: {name}={value!r}"
        )
    return int(value)


def trial_number(trial_id):
    """KerasTuner's console number of a trial ("Search: Running Trial #N").

    The oracle numbers trials from 1 in creation order and names them by
    the 0-based count, zero-padded (`"05"` is `#6`); `None` for an id that
    is not a count.
    """
    return int(trial_id) + 1 if str(trial_id).isdigit() else None


def _trial_label(trial_id):
    number = trial_number(trial_id)
    return f"#{number}" if number is not None else repr(trial_id)


def _trial_seed(seed, trial_id):
    trial_id = str(trial_id)
    offset = int(trial_id) if trial_id.isdigit() else zlib.crc32(
        trial_id.encode()
    )
    return (int(seed) + offset) % (2**31 - 1)


class TunerMixin:
    """Behaviour `make_tuner` adds in front of a KerasTuner tuner class.

    - every trial is seeded (`keras.utils.set_random_seed(seed + trial
      number)`) so that a search is repeatable;
    - each trial's tuner id, status, start and wall seconds are appended to
      `keras_dynfilt_runs_<tuner_id>.jsonl` in the project directory (what
      `tuning_report` reads, also for distributed searches);
    - `get_best_hyperparameters` and `get_best_models` return completed
      trials only (KerasTuner pads them with failed trials when too few
      completed) and raise when none completed.
    """

    _keras_dynfilt_seed = 0

    def trial_seed(self, trial_id):
        """The seed trial `trial_id` ran under: a retraining of its
        hyperparameters with it starts from the trial's initial weights."""
        return _trial_seed(self._keras_dynfilt_seed, trial_id)

    def on_trial_begin(self, trial):
        self._keras_dynfilt_start = time.time()
        keras.utils.set_random_seed(
            _trial_seed(self._keras_dynfilt_seed, trial.trial_id)
        )
        super().on_trial_begin(trial)

    def on_trial_end(self, trial):
        start = getattr(self, "_keras_dynfilt_start", None)
        record = {
            "trial_id": trial.trial_id,
            "tuner_id": self.tuner_id,
            "status": str(trial.status),
            "start": start,
            "seconds": None if start is None else time.time() - start,
            "pid": os.getpid(),
        }
        if str(trial.status) != "COMPLETED":
            message = (trial.message or "").strip().splitlines()
            record["error"] = message[-1] if message else None
            print(
                f"Trial {_trial_label(trial.trial_id)} {trial.status}: "
                f"{record['error']}",
                flush=True,
            )
        path = os.path.join(
            self.project_dir, f"{RUNS_FILE_PREFIX}{self.tuner_id}.jsonl"
        )
        os.makedirs(self.project_dir, exist_ok=True)
        with open(path, "a") as f:
            f.write(json.dumps(record) + "\n")
        super().on_trial_end(trial)

    def _completed_best_trials(self, num_trials):
        trials = [
            t
            for t in self.oracle.get_best_trials(num_trials)
            if str(t.status) == "COMPLETED"
        ]
        if not trials:
            raise RuntimeError(
                "No trial of this search completed, so there is no best "
                "trial. See each trial's error in the search output or in "
                "keras_dynfilt.tuning.tuning_report(tuner, output_dir)."
            )
        return trials

    def get_best_hyperparameters(self, num_trials=1):
        return [
            t.hyperparameters for t in self._completed_best_trials(num_trials)
        ]

    def get_best_models(self, num_models=1):
        # KerasTuner's checkpoints hold the optimizer's state; the model it
        # rebuilds has a fresh (unbuilt or partly built) optimizer, so Keras
        # warns that it skips that state. The models are returned for
        # inference or a new `compile`, as in KerasTuner: the warning says
        # nothing to act on.
        with warnings.catch_warnings():
            warnings.filterwarnings(
                "ignore",
                message=r"Skipping variable loading for optimizer '[^']*', "
                r"because it has \d+ variables whereas the saved optimizer "
                r"has \d+ variables",
                category=UserWarning,
            )
            return [
                self.load_model(t)
                for t in self._completed_best_trials(num_models)
            ]


def make_tuner(
    hypermodel,
    tuner="random",
    max_trials=10,
    executions_per_trial=1,
    seed=0,
    directory="runs/tuning",
    project_name=None,
    overwrite=False,
    distribution_strategy=None,
    objective=None,
    max_consecutive_failed_trials=1,
    **kwargs,
):
    """Builds a KerasTuner tuner that fails fast and reports what it does.

    The tuner is KerasTuner's own (`RandomSearch`, `BayesianOptimization`
    or `Hyperband`), with the traps of KerasTuner 1.4.8 handled:

    - on the TensorFlow backend every trial imports TensorBoard; without it
      every trial fails, so it is checked here, with an `ImportError`
      naming `keras-dynfilt[tuner]`;
    - a raising trial stops the search at once
      (`max_consecutive_failed_trials=1`; KerasTuner's default 3 lets a
      short search "finish" with failed trials only);
    - the objective always has an explicit direction (see
      `resolve_objective`); by default the hypermodel's own;
    - an existing project is reloaded (`overwrite=False`), and this is
      printed with its trial counts: a finished search then trains nothing;
    - the best hyperparameters and models come from completed trials only.

    Distributed tuning is KerasTuner's (a chief oracle over gRPC): set
    `KERASTUNER_TUNER_ID` (`chief`, `tuner0`, `tuner1`, ...),
    `KERASTUNER_ORACLE_IP` and `KERASTUNER_ORACLE_PORT` in each process and
    call `search` in all of them with the same `directory` and
    `project_name`.

    Args:
        hypermodel: A `keras_tuner.HyperModel` (e.g. one of this package's)
            or a function `build(hp) -> compiled keras.Model`.
        tuner: `"random"`, `"bayesian"` or `"hyperband"`.
        max_trials: Positive integer, trials of a random or Bayesian search
            (Hyperband's budget is `max_epochs`, a required keyword
            argument, with `factor` and `hyperband_iterations`).
        executions_per_trial: Positive integer, models trained per trial
            (random and Bayesian).
        seed: Integer, the oracle's seed; trial `i` also runs under
            `keras.utils.set_random_seed(seed + i)`.
        directory: Folder of the project folders.
        project_name: Project folder; defaults to
            `"<hypermodel name>_<tuner>"`.
        overwrite: Boolean; `False` reloads an existing project.
        distribution_strategy: Optional `tf.distribute` strategy (one
            worker, e.g. `MirroredStrategy`) each trial's model is built
            and trained under.
        objective: Optional metric name, `keras_tuner.Objective` or list of
            them; defaults to the hypermodel's `objective`.
        max_consecutive_failed_trials: Positive integer; the search raises
            after this many failed trials in a row.
        **kwargs: Further arguments of the KerasTuner tuner class (e.g.
            `max_epochs`, `factor`, `num_initial_points`).

    Returns:
        The KerasTuner tuner (a subclass of the chosen class with
        `TunerMixin`). `tuner.reloaded` tells whether an existing project
        was loaded.

    Examples:

    A one-trial search on 32 small images, and its report:

    >>> import tempfile
    >>> x = np.random.default_rng(0).random((32, 8, 8, 1), "float32")
    >>> y = (x.mean(axis=(1, 2, 3)) > 0.5).astype("int32")
    >>> hypermodel = keras_dynfilt.tuning.WSoftmaxHyperModel(
    ...     (8, 8, 1), 2, channels=4)
    >>> folder = tempfile.mkdtemp()
    >>> tuner = keras_dynfilt.tuning.make_tuner(
    ...     hypermodel, max_trials=1, directory=folder)
    >>> print(tuner.oracle.objective)
    Objective(name="val_accuracy", direction="max")
    >>> tuner.search(x, y, validation_data=(x, y), epochs=2, verbose=0)
    >>> report = keras_dynfilt.tuning.tuning_report(tuner, folder)
    >>> len(report.trials), report.best["status"]
    (1, 'COMPLETED')
    >>> sorted(report.files)
    ['json', 'markdown', 'plot']
    """
    check_tensorboard()
    if tuner not in TUNERS:
        raise ValueError(
            f"`tuner` must be one of {TUNERS}. Received: tuner={tuner!r}"
        )
    if not (isinstance(hypermodel, kt.HyperModel) or callable(hypermodel)):
        raise TypeError(
            "`hypermodel` must be a keras_tuner.HyperModel or a function "
            f"build(hp) -> keras.Model. Received: {hypermodel!r}"
        )
    max_trials = _check_positive_int(max_trials, "max_trials")
    executions_per_trial = _check_positive_int(
        executions_per_trial, "executions_per_trial"
    )
    max_consecutive_failed_trials = _check_positive_int(
        max_consecutive_failed_trials, "max_consecutive_failed_trials"
    )
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise ValueError(
            f"`seed` must be an integer. Received: seed={seed!r}"
        )
    objective = resolve_objective(objective, hypermodel)
    if project_name is None:
        base = getattr(hypermodel, "name", None) or "search"
        project_name = f"{base}_{tuner}"
    common = dict(
        hypermodel=hypermodel,
        objective=objective,
        seed=int(seed),
        directory=directory,
        project_name=project_name,
        overwrite=overwrite,
        distribution_strategy=distribution_strategy,
        max_consecutive_failed_trials=max_consecutive_failed_trials,
        **kwargs,
    )
    if tuner == "hyperband":
        if "max_epochs" not in kwargs:
            raise ValueError(
                "tuner='hyperband' needs `max_epochs` (the most epochs one "
                "model trains; with `factor` it sets the budget, not "
                "`max_trials`)."
            )
        base_class = kt.Hyperband
    else:
        common.update(
            max_trials=max_trials, executions_per_trial=executions_per_trial
        )
        base_class = (
            kt.RandomSearch if tuner == "random" else kt.BayesianOptimization
        )
    tuner_class = type(
        base_class.__name__,
        (TunerMixin, base_class),
        {"_keras_dynfilt_seed": int(seed)},
    )
    result = tuner_class(**common)
    trials = getattr(result.oracle, "trials", None) or {}
    result.reloaded = bool(trials) and not overwrite
    if result.reloaded:
        statuses = [str(t.status) for t in trials.values()]
        completed = statuses.count("COMPLETED")
        finished = (
            tuner != "hyperband"
            and completed + statuses.count("FAILED") >= max_trials
        )
        print(
            f"keras_dynfilt.tuning: reloaded the existing project "
            f"{result.project_dir!r} ({len(trials)} trials, {completed} "
            f"completed) because overwrite=False; "
            + (
                "the search is finished and search() will train nothing. "
                if finished
                else "search() continues it. "
            )
            + "Pass overwrite=True to start afresh.",
            flush=True,
        )
    return result
