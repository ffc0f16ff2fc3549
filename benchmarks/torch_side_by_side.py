"""keras-dynfilt side by side with Torch-Pruning: one experiment, both sides.

The same CIFAR-style ResNet (option-B shortcuts: 1x1 convolution +
BatchNorm where the shape changes) is trained on the full Fashion-MNIST
(60k train / 10k test, the offline IDX files) with the same recipe, batch
order and seeds in Keras (`keras_dynfilt.models.resnet_cifar`) and PyTorch
(`side_by_side_torch.ResNetCifar`, the layer-for-layer twin); then per seed:

- `base`: train the base model in both libraries;
- `prune`: prune it to ~2x fewer MACs with group-L2 local, group-L2 global
  and Taylor (keras-dynfilt: `keras_dynfilt.pruning.prune(...,
  target_macs=0.5)`; Torch-Pruning 1.6.1: `BasePruner` with
  `GroupMagnitudeImportance(p=2)` / `GroupTaylorImportance`, its
  `pruning_ratio` bisected to the same MACs), fine-tune the same epochs;
- `sfp`: Soft Filter Pruning from scratch at 40% (keras-dynfilt's
  `SoftFilterPruning`), the same epoch budget (base + fine-tuning epochs);
- `latency`: time every saved model again, both runtimes (for a quieter
  moment of a shared machine; the report then uses these times);
- `report`: merge into `<output>/seed_<n>.json` and print the table (mean
  and sample standard deviation over the seeds found).

Every method records accuracy (base, right after pruning, after
fine-tuning), MACs and parameters (each library's own counter, and one
common count from the exported ONNX graphs), CPU latency at batch 1 and 64
on one thread in each library's own runtime and in ONNX Runtime, and the
pruning call's own time. The two libraries run in separate interpreters
(`--keras-python`: TensorFlow; `--torch-python`: `make venv-sidebyside`),
both with one thread, under `nice`.

    make venv-sidebyside
    python benchmarks/torch_side_by_side.py --stage all --seeds 0,1,2 \\
        --epochs 1 --finetune-epochs 1
"""

import argparse
import os
import pathlib
import statistics
import subprocess
import sys

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
import side_by_side_common as common  # noqa: E402

WORKERS = {"keras": "side_by_side_keras.py", "torch": "side_by_side_torch.py"}
PUBLISHED = [
    # Torch-Pruning's README / benchmarks, ResNet-56 on CIFAR-10.
    {"method": "Group-L1 (Torch-Pruning)", "base": 93.53, "pruned": 92.93,
     "speedup": 2.12},
    {"method": "SFP (as reported by Torch-Pruning)", "base": 93.59,
     "pruned": 93.36, "speedup": 2.11},
]


def worker_command(args, library, stage, seed, methods=None):
    python = args.keras_python if library == "keras" else args.torch_python
    command = [
        python, str(HERE / WORKERS[library]), "--stage", stage,
        "--seed", str(seed), "--depth", str(args.depth),
        "--epochs", str(args.epochs),
        "--finetune-epochs", str(args.finetune_epochs),
        "--epoch-fraction", str(args.epoch_fraction),
        "--work", str(args.work),
    ]
    methods = methods or args.methods
    if methods:
        command += ["--methods", methods]
    if args.limit:
        command += ["--limit", str(args.limit)]
    if args.nice:
        command = ["nice", "-n", str(args.nice)] + command
    return command


def environment():
    env = dict(os.environ)
    env.update(
        OMP_NUM_THREADS="1", TF_NUM_INTRAOP_THREADS="1",
        TF_NUM_INTEROP_THREADS="1", TF_CPP_MIN_LOG_LEVEL="2",
        PYTHONPATH=os.pathsep.join(
            p for p in (str(ROOT), env.get("PYTHONPATH")) if p
        ),
    )
    env.pop("KERAS_BACKEND", None)
    return env


def run_parallel(commands):
    """Runs the commands at once (one per library); fails if one fails."""
    procs = []
    for library, command in commands:
        common.log("run", " ".join(command))
        procs.append((library, subprocess.Popen(command, env=environment())))
    failed = [lib for lib, p in procs if p.wait() != 0]
    if failed:
        raise SystemExit(f"stage failed for: {', '.join(failed)}")


def run_stage(args, stage, libraries):
    for seed in args.seeds:
        commands = []
        for lib in libraries:
            if stage == "prune" and args.parallel_methods:
                methods = (args.methods or ",".join(common.METHODS)).split(",")
                commands += [
                    (lib, worker_command(args, lib, stage, seed, m))
                    for m in methods
                ]
            else:
                commands.append((lib, worker_command(args, lib, stage, seed)))
        run_parallel(commands)


def collect(args, seed):
    """One seed's parts (whatever stages finished) as one dict."""
    out = {
        "seed": seed,
        "depth": args.depth,
        "dataset": "fashion_mnist (60000 train / 10000 test, "
        f"{common.FASHION_MNIST})",
        "recipe": common.RECIPE,
        "epochs": args.epochs,
        "finetune_epochs": args.finetune_epochs,
        "limit": args.limit or None,
    }
    for library in WORKERS:
        folder = pathlib.Path(args.work) / library / f"seed_{seed}"
        parts = {
            stage: common.read_json(folder / f"{stage}.json")
            for stage in ["base", "sfp", "latency"]
            + [f"prune_{m}" for m in common.METHODS]
        }
        out[library] = {k: v for k, v in parts.items() if v is not None}
        if "base" in out[library]:
            # What the workers ran, not what this call was given.
            out["epochs"] = out[library]["base"]["epochs"]
            out["epoch_fraction"] = out[library]["base"].get(
                "epoch_fraction", 1.0
            )
    expected = {
        "keras": ["base", "sfp"] + [f"prune_{m}" for m in common.METHODS],
        "torch": ["base"] + [f"prune_{m}" for m in common.METHODS],
    }
    out["complete"] = all(
        part in out[lib] for lib, parts in expected.items() for part in parts
    )
    return out


def _stats(values):
    values = [v for v in values if v is not None]
    if not values:
        return None
    mean = statistics.fmean(values)
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return mean, sd


def rows(results):
    """Table rows: (library, method, {column: [value per seed]})."""
    table = {}

    def add(library, method, column, value):
        entry = table.setdefault((library, method), {})
        entry.setdefault(column, []).append(value)

    for res in results:
        for library in WORKERS:
            parts = res.get(library, {})
            base = parts.get("base")
            if base is None:
                continue
            ref_macs = base["cost"]["macs"]
            ref_onnx = base["onnx"]["cost"]["macs"]
            entries = [("base", base)] + [
                (m, parts[f"prune_{m}"]) for m in common.METHODS
                if f"prune_{m}" in parts
            ]
            if parts.get("sfp"):
                entries.append(("sfp_40", parts["sfp"]))
            for method, r in entries:
                if method == "base":
                    add(library, method, "acc_base", 100 * base["accuracy"])
                elif method != "sfp_40":
                    add(library, method, "acc_base", 100 * base["accuracy"])
                    add(library, method, "acc_pruned",
                        100 * r["accuracy_pruned"])
                add(library, method, "acc_finetuned",
                    100 * r.get("accuracy_finetuned", base["accuracy"]))
                add(library, method, "macs_x", ref_macs / r["cost"]["macs"])
                add(library, method, "onnx_macs_x",
                    ref_onnx / r["onnx"]["cost"]["macs"])
                params_key = (
                    "trainable_params" if library == "keras" else "params"
                )
                add(library, method, "params_cut",
                    100 * (1 - r["cost"][params_key]
                           / base["cost"][params_key]))
                # The `latency` stage's re-timing, where it ran, replaces
                # the times taken right after training.
                rerun = (parts.get("latency") or {}).get(
                    "sfp" if method == "sfp_40" else method
                )
                own = rerun["latency"] if rerun else r["latency"]
                ort = rerun["onnx_latency"] if rerun else r["onnx"]["latency"]
                for b in (1, 64):
                    add(library, method, f"own_b{b}",
                        own[f"batch_{b}"]["min_ms"])
                    add(library, method, f"onnx_b{b}",
                        ort[f"batch_{b}"]["min_ms"])
                if "prune_seconds" in r:
                    add(library, method, "prune_s", r["prune_seconds"])
    return table


ACCURACY_COLUMNS = [
    ("acc_base", "base acc %", 2),
    ("acc_pruned", "pruned acc %", 2),
    ("acc_finetuned", "fine-tuned acc %", 2),
    ("macs_x", "MACs x (own)", 2),
    ("onnx_macs_x", "MACs x (ONNX)", 2),
    ("params_cut", "params cut %", 1),
]
SPEED_COLUMNS = [
    ("own_b1", "own b1 ms", 2),
    ("own_b64", "own b64 ms", 1),
    ("onnx_b1", "ORT b1 ms", 2),
    ("onnx_b64", "ORT b64 ms", 1),
    ("prune_s", "prune call s", 2),
]
LABELS = {
    "base": "base (unpruned)",
    "l2_local": "group-L2, local",
    "l2_global": "group-L2, global",
    "taylor": "Taylor",
    "sfp_40": "SFP 40% from scratch",
}


def markdown(table, columns):
    head = ["library", "method"] + [c[1] for c in columns]
    lines = ["| " + " | ".join(head) + " |",
             "|" + "|".join(["---"] * 2 + ["---:"] * len(columns)) + "|"]
    order = {m: i for i, m in enumerate(LABELS)}
    for (library, method), values in sorted(
        table.items(), key=lambda kv: (kv[0][0], order.get(kv[0][1], 99))
    ):
        cells = [
            "Keras + keras-dynfilt" if library == "keras"
            else "PyTorch + Torch-Pruning",
            LABELS.get(method, method),
        ]
        for key, _, digits in columns:
            stats = _stats(values.get(key, []))
            if stats is None:
                cells.append("")
            elif len(values[key]) > 1:
                cells.append(f"{stats[0]:.{digits}f} ± {stats[1]:.{digits}f}")
            else:
                cells.append(f"{stats[0]:.{digits}f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def report(args):
    output = pathlib.Path(args.output)
    results = []
    for seed in args.seeds:
        res = collect(args, seed)
        if not any(res[lib] for lib in WORKERS):
            common.log(f"seed {seed}: nothing finished yet")
            continue
        res["command"] = " ".join(
            [os.path.basename(sys.executable)] + sys.argv
        )
        common.write_json(output / f"seed_{seed}.json", res)
        results.append(res)
    if not results:
        return
    seeds = [r["seed"] for r in results]
    table = rows(results)
    text = "\n\n".join([
        markdown(table, ACCURACY_COLUMNS),
        markdown(table, SPEED_COLUMNS),
        f"Seeds {', '.join(map(str, seeds))}: mean ± sample standard "
        "deviation where more than one seed finished; latency: best of N "
        "calls, one thread.",
    ])
    print(text)
    print()
    print("Torch-Pruning's published ResNet-56 / CIFAR-10 rows:")
    for row in PUBLISHED:
        print(f"  {row['method']}: {row['base']} -> {row['pruned']} "
              f"at {row['speedup']}x")
    (output / "table.md").write_text(text + "\n")


def parse_seeds(text):
    return [int(s) for s in text.split(",") if s.strip()]


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument(
        "--stage", default="all",
        choices=("base", "prune", "sfp", "latency", "report", "all"),
    )
    parser.add_argument("--seeds", type=parse_seeds, default=[0, 1, 2])
    parser.add_argument("--depth", type=int, default=20,
                        help="ResNet depth 6n+2 (20; 56 if time allows)")
    parser.add_argument("--epochs", type=int, default=1,
                        help="base training epochs")
    parser.add_argument("--finetune-epochs", type=int, default=1)
    parser.add_argument(
        "--epoch-fraction", type=float, default=1.0,
        help="an epoch is the first FRACTION of the batches of each "
        "shuffled pass over the full training set (CPU-starved runs)",
    )
    parser.add_argument("--libraries", default="keras,torch")
    parser.add_argument("--methods", default=None,
                        help=f"subset of {','.join(common.METHODS)}")
    parser.add_argument(
        "--output", default=str(ROOT / "docs/results/pruning/side_by_side")
    )
    parser.add_argument("--work", default=str(ROOT / "runs/side_by_side"),
                        help="checkpoints and per-stage JSON")
    keras_python = ROOT / ".venv/bin/python"
    parser.add_argument(
        "--keras-python",
        default=str(keras_python) if keras_python.exists()
        else sys.executable,
        help="interpreter with TensorFlow and keras-dynfilt",
    )
    parser.add_argument(
        "--torch-python", default=str(ROOT / ".venv-torch/bin/python"),
        help="interpreter with torch and torch-pruning",
    )
    parser.add_argument("--nice", type=int, default=10)
    parser.add_argument(
        "--parallel-methods", action="store_true",
        help="prune: one process per method (each one thread)",
    )
    parser.add_argument("--limit", type=int, default=0,
                        help="first N images only (smoke runs)")
    args = parser.parse_args(argv)
    libraries = [x for x in args.libraries.split(",") if x]
    for lib in libraries:
        if lib not in WORKERS:
            parser.error(f"--libraries: unknown {lib!r}")
    stages = (
        ["base", "prune", "sfp", "latency", "report"] if args.stage == "all"
        else [args.stage]
    )
    for stage in stages:
        if stage == "report":
            report(args)
        elif stage == "latency":
            # One process at a time: timings must not share the CPU.
            for seed in args.seeds:
                for lib in libraries:
                    command = worker_command(args, lib, stage, seed)
                    run_parallel([(lib, command)])
        elif stage == "sfp":
            if "keras" in libraries:
                run_stage(args, "sfp", ["keras"])
        else:
            run_stage(args, stage, libraries)


if __name__ == "__main__":
    main()
