"""`tuning_report`: every trial of a search, as JSON, Markdown and a plot."""

import dataclasses
import glob
import json
import math
import os

from keras_dynfilt._plotting import pyplot_or_warn
from keras_dynfilt.tuning.tuner import RUNS_FILE_PREFIX, trial_number


@dataclasses.dataclass
class TuningReport:
    """What a search did, trial by trial.

    Attributes:
        trials: List of dicts, one per trial in trial-id order: `trial_id`,
            `status`, `hyperparameters`, `objective` (the trial's score),
            `metrics` (every metric the trial reported, at its best step),
            `best_step`, `seconds` (wall time), `tuner_id` (the process that
            ran it), `error` (last line of the failure) and `traceback`.
        best: The best completed trial (one of `trials`).
        failed: The trials that did not complete.
        objective: `{"name": ..., "direction": "max" | "min"}`.
        project_dir: The search's project folder.
        files: Paths of `tuning.json`, `tuning.md` and `tuning.png`.
    """

    trials: list
    best: dict
    failed: list
    objective: dict
    project_dir: str
    files: dict


def _runs(project_dir):
    """`{trial_id: [run records]}` from every tuner's runs file."""
    runs = {}
    pattern = os.path.join(project_dir, f"{RUNS_FILE_PREFIX}*.jsonl")
    for path in sorted(glob.glob(pattern)):
        with open(path) as f:
            for line in f:
                line = line.strip()
                if line:
                    record = json.loads(line)
                    runs.setdefault(record["trial_id"], []).append(record)
    return runs


def _number(value):
    if value is None:
        return None
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def _label(trial):
    number = trial.get("number")
    return f"#{number}" if number is not None else str(trial["trial_id"])


def _trial_record(trial, runs):
    metrics = {}
    for name in trial.metrics.metrics:
        value = trial.metrics.get_last_value(name)
        metrics[name] = _number(value)
    message = (trial.message or "").strip()
    lines = message.splitlines()
    records = runs.get(trial.trial_id, [])
    seconds = [r["seconds"] for r in records if r.get("seconds") is not None]
    return {
        # KerasTuner's console number: the report, the plot and the
        # examples use it, so that they agree with the console.
        "number": trial_number(trial.trial_id),
        "trial_id": trial.trial_id,
        "status": str(trial.status),
        "hyperparameters": dict(trial.hyperparameters.values),
        "objective": _number(trial.score),
        "metrics": metrics,
        "best_step": trial.best_step,
        "seconds": seconds[-1] if seconds else None,
        "tuner_id": records[-1]["tuner_id"] if records else None,
        "runs": len(records),
        "error": lines[-1] if lines else None,
        "traceback": message or None,
    }


def _format(value):
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else str(value)


def _markdown(report, names):
    objective = report.objective
    best = report.best
    lines = [
        "# Tuning report",
        "",
        f"Project `{report.project_dir}`; objective "
        f"`{objective['name']}` ({objective['direction']}imised). "
        f"{len(report.trials)} trials: "
        f"{len(report.trials) - len(report.failed)} completed, "
        f"{len(report.failed)} not.",
        "",
        f"Best: trial {_label(best)} (id {best['trial_id']!r}), "
        f"{objective['name']} = "
        f"{_format(best['objective'])}, "
        + ", ".join(
            f"{k} = {_format(v)}" for k, v in best["hyperparameters"].items()
        ),
        "",
        "Trials are numbered as KerasTuner's console numbers them "
        "(\"Running Trial #N\"); the id is KerasTuner's trial id.",
        "",
        "| trial | id | status | "
        + " | ".join(names)
        + f" | {objective['name']} | seconds | tuner |",
        "|---|---|---|" + "---|" * len(names) + "---|---|---|",
    ]
    for trial in report.trials:
        hps = trial["hyperparameters"]
        mark = " (best)" if trial is best else ""
        lines.append(
            f"| {_label(trial)}{mark} | {trial['trial_id']} | "
            f"{trial['status']} | "
            + " | ".join(_format(hps.get(n)) for n in names)
            + f" | {_format(trial['objective'])} | "
            f"{_format(trial['seconds'])} | {_format(trial['tuner_id'])} |"
        )
    metric_names = sorted(
        {m for t in report.trials for m in t["metrics"]}
        - {objective["name"]}
    )
    if metric_names:
        lines += [
            "",
            "Other metrics (at each trial's best step):",
            "",
            "| trial | " + " | ".join(metric_names) + " |",
            "|---|" + "---|" * len(metric_names),
        ]
        for trial in report.trials:
            lines.append(
                f"| {_label(trial)} | "
                + " | ".join(
                    _format(trial["metrics"].get(m)) for m in metric_names
                )
                + " |"
            )
    if report.failed:
        lines += ["", "## Trials that did not complete", ""]
        for trial in report.failed:
            lines.append(
                f"- trial {_label(trial)} ({trial['status']}): "
                f"`{trial['error']}`"
            )
    return "\n".join(lines) + "\n"


def _plot(report, names, path):
    plt = pyplot_or_warn(path, stacklevel=3)
    if plt is None:
        return None
    completed = [t for t in report.trials if t["objective"] is not None]
    objective = report.objective
    numeric = [
        n
        for n in names
        if all(
            isinstance(t["hyperparameters"].get(n), (int, float))
            for t in completed
        )
        and len({t["hyperparameters"].get(n) for t in completed}) > 1
    ]
    pruning = all(
        t["metrics"].get("macs") is not None
        and t["metrics"].get("val_accuracy") is not None
        for t in completed
    )
    panels = 1 + len(numeric) + int(pruning)
    fig, axes = plt.subplots(
        1, panels, figsize=(4.2 * panels, 3.4), squeeze=False
    )
    axes = list(axes[0])
    ax = axes.pop(0)
    order = [
        t["number"] if t["number"] is not None else i + 1
        for i, t in enumerate(report.trials)
    ]
    values = [t["objective"] for t in report.trials]
    done = [(i, v) for i, v in zip(order, values) if v is not None]
    better = max if objective["direction"] == "max" else min
    running, best_so_far = [], None
    for _, v in done:
        best_so_far = v if best_so_far is None else better(best_so_far, v)
        running.append(best_so_far)
    ax.plot([i for i, _ in done], [v for _, v in done], "o", label="trial")
    ax.step([i for i, _ in done], running, where="post", label="best so far")
    for i, t in zip(order, report.trials):
        if t["objective"] is None:
            ax.axvline(i, color="red", alpha=0.3)
    ax.set_xlabel("trial # (as KerasTuner's console; red: not completed)")
    ax.set_ylabel(objective["name"])
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    for name in numeric:
        ax = axes.pop(0)
        ax.plot(
            [float(t["hyperparameters"][name]) for t in completed],
            [t["objective"] for t in completed],
            "o",
        )
        ax.set_xlabel(name)
        ax.set_ylabel(objective["name"])
        ax.grid(alpha=0.3)
    if pruning:
        ax = axes.pop(0)
        for t in completed:
            ax.plot(t["metrics"]["macs"] / 1e6, t["metrics"]["val_accuracy"],
                    "o", color="C0")
            label = t["hyperparameters"].get("pruning_rate")
            if label is not None:
                ax.annotate(f"{label:g}", (t["metrics"]["macs"] / 1e6,
                                           t["metrics"]["val_accuracy"]),
                            fontsize=7, xytext=(3, 3),
                            textcoords="offset points")
        ax.set_xlabel("MMACs of the compacted model (label: pruning rate)")
        ax.set_ylabel("val_accuracy")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def tuning_report(tuner, output_dir):
    """Writes `tuning.json`, `tuning.md` and `tuning.png`; returns the report.

    Reads every trial the tuner's oracle holds (for a distributed search,
    the chief's, or a tuner reloaded from the same project afterwards),
    with the wall seconds and tuner id each run recorded (see
    `TunerMixin`). `tuning.md` has a row per trial (status,
    hyperparameters, objective, seconds) and the error of every trial that
    did not complete; `tuning.png` plots the objective per trial with the
    running best, the objective against each numeric hyperparameter, and,
    for pruning searches, validation accuracy against the compacted
    model's MACs.

    Args:
        tuner: A KerasTuner tuner after (or during) `search`.
        output_dir: Folder for the three files (created if needed).

    Returns:
        A `TuningReport`.

    Raises:
        RuntimeError: If no trial completed (the report names the errors).
        ValueError: If the tuner has no local oracle (a distributed worker).
    """
    oracle = tuner.oracle
    if not hasattr(oracle, "trials"):
        raise ValueError(
            "`tuner` has no local oracle (a distributed worker's tuner); "
            "build the report on the chief, or from a tuner reloaded from "
            "the same project folder."
        )
    objective = oracle.objective
    if isinstance(objective, (list, tuple)) or not hasattr(
        objective, "direction"
    ):
        objective_info = {"name": getattr(objective, "name", "objective"),
                          "direction": "min"}
    else:
        objective_info = {
            "name": objective.name,
            "direction": objective.direction,
        }
    runs = _runs(tuner.project_dir)
    trials = [
        _trial_record(trial, runs)
        for _, trial in sorted(
            oracle.trials.items(), key=lambda item: (len(item[0]), item[0])
        )
    ]
    completed = [
        t for t in trials
        if t["status"] == "COMPLETED" and t["objective"] is not None
    ]
    failed = [t for t in trials if t["status"] != "COMPLETED"]
    if not completed:
        errors = "; ".join(
            f"trial {t['trial_id']} {t['status']}: {t['error']}"
            for t in failed[:3]
        )
        raise RuntimeError(
            f"No trial completed in project {tuner.project_dir!r} "
            f"({len(trials)} trials). " + (errors or "")
        )
    pick = max if objective_info["direction"] == "max" else min
    best = pick(completed, key=lambda t: t["objective"])
    names = []
    for t in trials:
        for name in t["hyperparameters"]:
            if name not in names:
                names.append(name)
    os.makedirs(output_dir, exist_ok=True)
    files = {
        "json": os.path.join(output_dir, "tuning.json"),
        "markdown": os.path.join(output_dir, "tuning.md"),
        "plot": os.path.join(output_dir, "tuning.png"),
    }
    report = TuningReport(
        trials=trials,
        best=best,
        failed=failed,
        objective=objective_info,
        project_dir=str(tuner.project_dir),
        files=files,
    )
    with open(files["json"], "w") as f:
        json.dump(
            {
                "project_dir": report.project_dir,
                "objective": objective_info,
                "best_trial_id": best["trial_id"],
                "best": best,
                "num_trials": len(trials),
                "num_completed": len(completed),
                "num_failed": len(failed),
                "trials": trials,
            },
            f,
            indent=2,
            default=str,
        )
    with open(files["markdown"], "w") as f:
        f.write(_markdown(report, names))
    if _plot(report, names, files["plot"]) is None:
        files["plot"] = None
    return report
