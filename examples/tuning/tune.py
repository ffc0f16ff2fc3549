"""Tuning with KerasTuner: a search, the report, the best model retrained.

Tunes one of the library's hypermodels (`keras_dynfilt.tuning`) on a
validation split carved from the training data (the test set is never seen
by the tuner), writes the report (`tuning.json`, `tuning.md`, `tuning.png`),
retrains the best hyperparameters on the whole training data, evaluates on
the test set once and writes `results.json` with a `tuning` block.

    python examples/tuning/tune.py --model sfp --depth 20 --max-trials 6 \\
        --epochs 4 --output-dir runs/tuning/sfp
    python examples/tuning/tune.py --model wsoftmax --tuner bayesian
    python examples/tuning/tune.py --model filter_generation \\
        --tuner hyperband --max-epochs 4
    python examples/tuning/tune.py --model nddr --strategy mirrored \\
        --cpu-replicas 2

Models: `filter_generation` (n_ae, s, learning rate), `wsoftmax` (alpha,
feature width, softmax-first phase), `nddr` (two tasks: the class and the
image's rotation by a multiple of 90 degrees; init, (alpha, beta), NDDR
learning-rate multiplier, weight decay), `sfp` (Soft Filter Pruning of a
CIFAR ResNet: rate, criterion, frequency; scored as `val_accuracy -
--flops-weight * flops_fraction`, or with `--macs-budget`, or with
`--max-accuracy-drop` and `--reference-accuracy`).

Distributed tuning is KerasTuner's own: start the same command in several
processes sharing `--output-dir`, with `KERASTUNER_TUNER_ID=chief` in one
and `tuner0`, `tuner1`, ... in the others, and `KERASTUNER_ORACLE_IP` /
`KERASTUNER_ORACLE_PORT` naming the chief in all. The chief serves the
oracle, then writes the report and retrains; workers run trials and exit.
"""

import json
import os
import time

import keras
import numpy as np

import keras_dynfilt
from keras_dynfilt import training, tuning

MODELS = ("filter_generation", "wsoftmax", "nddr", "sfp")
ROTATIONS = 4


def is_chief_process():
    """True unless this is a worker of a distributed KerasTuner search."""
    if "KERASTUNER_ORACLE_IP" not in os.environ:
        return True
    return "chief" in os.environ.get("KERASTUNER_TUNER_ID", "")


def is_distributed():
    return "KERASTUNER_ORACLE_IP" in os.environ


def split_validation(x, y, fraction, seed):
    """A stratified, seeded validation split carved from the training set."""
    from sklearn.model_selection import train_test_split

    return train_test_split(
        x, y, test_size=fraction, random_state=seed, stratify=y
    )


def rotation_task(x, seed):
    """Rotates each image by k * 90 degrees; returns (images, k)."""
    rng = np.random.default_rng(seed)
    k = rng.integers(0, ROTATIONS, len(x))
    rotated = np.stack([np.rot90(img, r) for img, r in zip(x, k)])
    return rotated.astype("float32"), k.astype("int32")


def make_hypermodel(args, input_shape, num_classes):
    space = json.loads(args.space) if args.space else None
    fixed = json.loads(args.fixed) if args.fixed else None
    if args.model == "filter_generation":
        small = min(input_shape[:2]) < 28
        return tuning.FilterGenerationHyperModel(
            input_shape,
            num_classes,
            filters=(5,) if small else (5, 5),
            kernel_size=3 if small else 5,
            space=space,
            fixed=fixed,
        )
    if args.model == "wsoftmax":
        return tuning.WSoftmaxHyperModel(
            input_shape, num_classes, space=space, fixed=fixed
        )
    if args.model == "nddr":
        return tuning.NDDRHyperModel(
            input_shape,
            (num_classes, ROTATIONS),
            task_names=["label", "rotation"],
            space=space,
            fixed=fixed,
        )

    def build_resnet():
        return keras_dynfilt.models.resnet_cifar(
            args.depth,
            num_classes=num_classes,
            input_shape=input_shape,
            weight_decay=args.weight_decay,
        )

    return tuning.SoftFilterPruningHyperModel(
        build_resnet,
        flops_weight=args.flops_weight,
        macs_budget=args.macs_budget,
        max_accuracy_drop=args.max_accuracy_drop,
        reference_accuracy=args.reference_accuracy,
        optimizer=keras.optimizers.SGD(
            args.learning_rate, momentum=0.9, nesterov=True
        ),
        space=space,
        fixed=fixed,
    )


# Below this many optimizer steps per trial the accuracies a tuner ranks on
# are mostly the noise of the first steps (measured: a ResNet-20 trial of
# 14 steps validated at 40% and its retraining scored 12%), and BatchNorm's
# moving statistics (momentum 0.9) still carry their initial values.
MIN_MEANINGFUL_STEPS = 200


def warn_if_too_short(args, num_train):
    steps = args.steps_per_epoch or -(-num_train // args.batch_size)
    total = steps * args.epochs
    if total < MIN_MEANINGFUL_STEPS:
        print(
            f"note: each trial trains {total} optimizer steps ({num_train} "
            f"images, batch {args.batch_size}, {args.epochs} epochs), fewer "
            f"than {MIN_MEANINGFUL_STEPS}: its accuracy is mostly the noise "
            "of the first steps, so the ranking, the best trial and the "
            "retrained model's accuracy mean little. Use more data or "
            "epochs for a result (this setting is fine for a smoke run).",
            flush=True,
        )
    return total


def task_data(args, x, y, seed):
    """The `(x, y)` a hypermodel's `fit` takes for this example's task."""
    if args.model != "nddr":
        return x, y
    rotated, k = rotation_task(x, seed)
    return rotated, [y.astype("int32"), k]


def evaluate_test(args, hypermodel, model, x_test, y_test, batch_size):
    """Test metrics of the retrained model (the only test evaluation)."""
    if args.model == "filter_generation":
        return model.evaluate(
            x_test,
            {"logits": y_test, "reconstruction": x_test},
            batch_size=batch_size,
            return_dict=True,
            verbose=0,
        ), {}
    if args.model == "wsoftmax":
        infer = tuning.WSoftmaxHyperModel.inference_model(model)
        infer.compile(
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=["accuracy"],
        )
        return infer.evaluate(
            x_test, y_test, batch_size=batch_size, return_dict=True,
            verbose=0,
        ), {}
    if args.model == "nddr":
        rotated, k = rotation_task(x_test, args.seed + 2)
        metrics = model.evaluate(
            rotated,
            {"label": y_test, "rotation": k},
            batch_size=batch_size,
            return_dict=True,
            verbose=0,
        )
        metrics["mean_accuracy"] = float(
            np.mean([metrics["label_accuracy"], metrics["rotation_accuracy"]])
        )
        return metrics, {}
    # sfp: the product is the compacted model; it computes the masked
    # model's function, so it is the one evaluated.
    small = keras_dynfilt.pruning.compact(model)
    small.compile(
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    metrics = small.evaluate(
        x_test, y_test, batch_size=batch_size, return_dict=True, verbose=0
    )
    full = keras_dynfilt.pruning.model_cost(model)
    cost = keras_dynfilt.pruning.model_cost(small)
    return metrics, {
        "pruning": {
            "macs": cost.macs,
            "full_macs": full.macs,
            "flops_reduction": keras_dynfilt.pruning.macs_reduction(full, cost),
            "params": cost.params,
            "full_params": full.params,
            "params_reduction": 1 - cost.params / full.params,
        }
    }


def main(argv=None):
    parser = training.example_argument_parser(
        __doc__.splitlines()[0],
        dataset="fashion_mnist",
        epochs=3,
        batch_size=128,
        output_dir=os.path.join("runs", "tuning"),
    )
    parser.add_argument("--model", default="wsoftmax", choices=MODELS)
    parser.add_argument("--tuner", default="random", choices=tuning.TUNERS)
    parser.add_argument("--max-trials", type=int, default=6)
    parser.add_argument(
        "--max-epochs", type=int, default=None,
        help="Hyperband: the most epochs one model trains (default "
        "--epochs)",
    )
    parser.add_argument(
        "--validation-fraction", type=float, default=0.2,
        help="fraction of the training data held out for the tuner",
    )
    parser.add_argument(
        "--retrain-epochs", type=int, default=None,
        help="epochs of the final retraining (default --epochs)",
    )
    parser.add_argument(
        "--project-name", default=None,
        help="default: <model>_<tuner>; the project lives in "
        "<output-dir>/search",
    )
    parser.add_argument(
        "--overwrite", action="store_true",
        help="start the search afresh instead of reloading the project",
    )
    parser.add_argument("--space", default=None,
                        help="JSON dict of range overrides (space=)")
    parser.add_argument("--fixed", default=None,
                        help="JSON dict of pinned values (fixed=)")
    parser.add_argument("--depth", type=int, default=20, help="sfp: ResNet")
    parser.add_argument("--learning-rate", type=float, default=0.1,
                        help="sfp: SGD learning rate")
    parser.add_argument("--weight-decay", type=float, default=5e-4,
                        help="sfp: L2 factor of the ResNet kernels")
    parser.add_argument("--flops-weight", type=float, default=0.1)
    parser.add_argument("--macs-budget", type=float, default=None)
    parser.add_argument("--max-accuracy-drop", type=float, default=None)
    parser.add_argument("--reference-accuracy", type=float, default=None)
    args = parser.parse_args(argv)
    if not 0.0 < args.validation_fraction < 1.0:
        parser.error(
            "--validation-fraction must be in (0, 1). Received: "
            f"{args.validation_fraction}"
        )

    run = training.ExperimentRun.from_args(args)
    data = run.load_data()
    x_all, y_all = training.numpy_split(data, "train")
    x_test, y_test = training.numpy_split(data, "test")
    x_train, x_val, y_train, y_val = split_validation(
        x_all, y_all, args.validation_fraction, args.seed
    )
    print(
        f"dataset {data.name} ({data.source}): {len(x_train)} train / "
        f"{len(x_val)} validation (tuner) / {len(x_test)} test; model "
        f"{args.model}, tuner {args.tuner}"
    )
    hypermodel = make_hypermodel(args, data.input_shape, data.num_classes)
    strategy = run.strategy if run.num_replicas > 1 else None
    extra = {}
    if args.tuner == "hyperband":
        extra["max_epochs"] = args.max_epochs or args.epochs
    tuner = tuning.make_tuner(
        hypermodel,
        tuner=args.tuner,
        max_trials=args.max_trials,
        seed=args.seed,
        directory=os.path.join(args.output_dir, "search"),
        project_name=args.project_name,
        overwrite=args.overwrite,
        distribution_strategy=strategy,
        **extra,
    )
    warn_if_too_short(args, len(x_train))
    fit_x, fit_y = task_data(args, x_train, y_train, args.seed)
    val_x, val_y = task_data(args, x_val, y_val, args.seed + 1)
    search_start = time.perf_counter()
    tuner.search(
        fit_x,
        fit_y,
        validation_data=(val_x, val_y),
        epochs=args.epochs,
        batch_size=args.batch_size,
        verbose=args.verbose,
    )
    search_seconds = time.perf_counter() - search_start
    if not is_chief_process():
        print(f"worker {os.environ.get('KERASTUNER_TUNER_ID')}: done")
        return None

    report = tuning.tuning_report(tuner, args.output_dir)
    best_hp = tuner.get_best_hyperparameters()[0]
    print(
        f"best trial #{report.best['number']} "
        f"(id {report.best['trial_id']!r}): "
        f"{report.objective['name']} = {report.best['objective']:.4f} "
        f"with {best_hp.values}"
    )

    # Retrain the best hyperparameters on the whole training data (train +
    # validation), then evaluate on the test set once. Under the best
    # trial's seed: the retraining starts from the trial's initial weights
    # (another seed is another draw, which in a short run can differ from
    # the trial by tens of points).
    keras.backend.clear_session()
    keras.utils.set_random_seed(tuner.trial_seed(report.best["trial_id"]))
    all_x, all_y = task_data(args, x_all, y_all, args.seed)
    with run.strategy.scope():
        model = hypermodel.build(best_hp)
    run.model = model
    fitted = hypermodel.fit(
        best_hp,
        model,
        all_x,
        all_y,
        # Monitored only (the model trains on it): the test set below is
        # the honest figure.
        validation_data=(val_x, val_y),
        epochs=args.retrain_epochs or args.epochs,
        batch_size=args.batch_size,
        callbacks=run.callbacks(),
        verbose=args.verbose,
    )
    history = fitted if isinstance(fitted, keras.callbacks.History) else None
    test_metrics, more = evaluate_test(
        args, hypermodel, model, x_test, y_test, args.batch_size
    )
    tuning_block = {
        "model": args.model,
        "tuner": args.tuner,
        "max_trials": args.max_trials,
        "distributed": is_distributed(),
        "objective": report.objective,
        "best_trial": report.best["number"],  # KerasTuner's "Trial #N"
        "best_trial_id": report.best["trial_id"],
        "best_hyperparameters": dict(best_hp.values),
        "best_objective": report.best["objective"],
        "best_metrics": report.best["metrics"],
        "paper_defaults": hypermodel.paper_defaults(),
        "num_trials": len(report.trials),
        "num_completed": len(report.trials) - len(report.failed),
        "num_failed": len(report.failed),
        "trials": [
            {
                k: t[k]
                for k in ("number", "trial_id", "status", "hyperparameters",
                          "objective", "seconds", "tuner_id")
            }
            for t in report.trials
        ],
        "search_seconds": search_seconds,
        "reloaded": tuner.reloaded,
        "project_dir": str(tuner.project_dir),
        "report_files": {
            k: (None if v is None else os.path.basename(v))
            for k, v in report.files.items()
        },
        "split": {
            "train": len(x_train),
            "validation": len(x_val),
            "test": len(x_test),
        },
        "retrain_metrics": None
        if history is not None
        else {k: float(v) for k, v in fitted.items()},
    }
    results = run.finish(
        history,
        test_metrics,
        extra={"tuning": tuning_block, **more},
        plot=history is not None,
    )
    print(
        "test: "
        + ", ".join(f"{k} {v:.4f}" for k, v in results["test"].items())
        + f" -> {args.output_dir}/results.json"
    )
    return results


if __name__ == "__main__":
    main()
