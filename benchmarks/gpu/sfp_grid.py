"""The SFP reproduction grid, several runs at a time on one device.

Runs `examples/pruning/train_sfp.py` for every depth:rate of `--configs`,
every method (baseline / sfp / fpgm) and every seed, `--parallel` processes
at a time (small ResNets leave a large GPU mostly idle, and compilation is
CPU work), each with its own slice of GPU memory. Runs still going at
`--deadline` (a Unix time) are stopped and listed as such: only finished
runs have a `results.json`. Writes `grid.json` (each run: command, status,
seconds, the key numbers) and prints the table of
`train_sfp.py --compare` per depth.

    python benchmarks/gpu/sfp_grid.py --epochs 8 --data-dir DIR \\
        --output-dir $OUT/sfp --configs 20:0.3 56:0.4 --seeds 0 1 2
"""

import argparse
import itertools
import json
import os
import pathlib
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "examples" / "pruning" / "train_sfp.py"


def summary(path):
    with open(path) as f:
        r = json.load(f)
    p = r["pruning"]
    return {
        "masked_accuracy": p["masked_accuracy"],
        "compacted_accuracy": p["compacted_accuracy"],
        "flops_reduction": p["flops_reduction"],
        "params_reduction": p["params_reduction"],
        "epochs": len(r["history"].get("loss", [])),
        "epoch_seconds": r["epoch_seconds"],
        "devices": r["devices"],
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", nargs="+", default=["20:0.3", "56:0.4"],
                        help="depth:pruning-rate")
    parser.add_argument("--methods", nargs="+",
                        default=["baseline", "sfp", "fpgm"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, required=True)
    parser.add_argument("--parallel", type=int, default=9)
    parser.add_argument("--deadline", type=float, default=None,
                        help="Unix time at which unfinished runs stop")
    parser.add_argument("--output-dir", required=True)
    parser.add_argument("--memory-fraction", type=float, default=None,
                        help="XLA_PYTHON_CLIENT_MEM_FRACTION of each run "
                        "(default: 0.9 / --parallel)")
    args, extra = parser.parse_known_args(argv)
    out = pathlib.Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    fraction = args.memory_fraction or 0.9 / args.parallel
    env = {
        **os.environ,
        "XLA_PYTHON_CLIENT_MEM_FRACTION": f"{fraction:.3f}",
        "KERAS_BACKEND": os.environ.get("KERAS_BACKEND", "jax"),
    }
    todo = []
    for config, method, seed in itertools.product(
        args.configs, args.methods, args.seeds
    ):
        depth, rate = config.split(":")
        run_dir = out / f"resnet{depth}" / method / f"seed{seed}"
        run_dir.mkdir(parents=True, exist_ok=True)
        command = [
            sys.executable, str(SCRIPT), "--method", method,
            "--depth", depth, "--pruning-rate", rate, "--seed", str(seed),
            "--epochs", str(args.epochs), "--output-dir", str(run_dir),
            *extra,
        ]
        todo.append({"name": f"resnet{depth}/{method}/seed{seed}",
                     "dir": run_dir, "command": command})
    running, done = [], []
    while todo or running:
        while todo and len(running) < args.parallel:
            job = todo.pop(0)
            log = open(job["dir"] / "log.txt", "w")
            job["start"] = time.time()
            job["proc"] = subprocess.Popen(
                job["command"], env=env, stdout=log, stderr=subprocess.STDOUT
            )
            job["log"] = log
            running.append(job)
        time.sleep(1)
        late = args.deadline is not None and time.time() > args.deadline
        for job in list(running):
            code = job["proc"].poll()
            if code is None and late:
                job["proc"].kill()
                code = job["proc"].wait()
                job["status"] = "stopped at the deadline"
            if code is None:
                continue
            job["log"].close()
            job.setdefault("status", "ok" if code == 0 else f"exit {code}")
            job["seconds"] = time.time() - job["start"]
            running.remove(job)
            done.append(job)
        if late:
            for job in todo:
                job["status"] = "not started (deadline)"
                done.append(job)
            todo = []
    grid = []
    for job in done:
        entry = {"name": job["name"], "status": job["status"],
                 "seconds": job.get("seconds"),
                 "command": " ".join(job["command"])}
        results = job["dir"] / "results.json"
        if job["status"] == "ok" and results.exists():
            entry.update(summary(results))
        grid.append(entry)
        print(f"{job['name']:28s} {job['status']:24s} "
              f"{entry.get('masked_accuracy', float('nan')):.4f} "
              f"{entry.get('compacted_accuracy', float('nan')):.4f}",
              flush=True)
    with open(out / "grid.json", "w") as f:
        json.dump({"epochs": args.epochs, "parallel": args.parallel,
                   "configs": args.configs, "seeds": args.seeds,
                   "runs": sorted(grid, key=lambda e: e["name"])}, f,
                  indent=2)
    for config in args.configs:
        depth_dir = out / f"resnet{config.split(':')[0]}"
        if any(depth_dir.rglob("results.json")):
            subprocess.run([sys.executable, str(SCRIPT), "--compare",
                            str(depth_dir)], env=env)
    return grid


if __name__ == "__main__":
    main()
