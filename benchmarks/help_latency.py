"""How long `--help` of the example scripts takes, against bare Python.

Each command runs in a fresh interpreter, `--repeats` times; the table gives
the median seconds and the ratio to `python -c pass` timed in the same run
(`import keras` is timed too: the cost of the backend import alone).

    python benchmarks/help_latency.py \
        --output docs/results/training/help_latency.json
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = (
    "examples/lightcnn/train.py",
    "examples/demo/prune_lightcnn.py",
    "examples/tuning/tune.py",
)


def _time(command, repeats):
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run(
            command, cwd=ROOT, check=True, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        seconds.append(time.perf_counter() - start)
    return statistics.median(seconds)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--output", default=None, help="JSON file to write")
    args = parser.parse_args(argv)

    commands = {"python -c pass": [sys.executable, "-c", "pass"]}
    commands["python -c 'import keras'"] = [
        sys.executable, "-c", "import keras"
    ]
    for script in EXAMPLES:
        commands[f"{script} --help"] = [sys.executable, script, "--help"]
    seconds = {name: _time(cmd, args.repeats) for name, cmd in commands.items()}
    baseline = seconds["python -c pass"]
    rows = [
        {"command": name, "seconds": round(s, 3),
         "ratio_to_bare_python": round(s / baseline, 1)}
        for name, s in seconds.items()
    ]
    width = max(len(r["command"]) for r in rows)
    print(f"{'command':<{width}}  seconds  x bare python")
    for r in rows:
        print(f"{r['command']:<{width}}  {r['seconds']:7.2f}  "
              f"{r['ratio_to_bare_python']:13.1f}")
    if args.output:
        os.makedirs(os.path.dirname(os.path.abspath(args.output)),
                    exist_ok=True)
        with open(args.output, "w") as f:
            json.dump({
                "command": "python benchmarks/help_latency.py "
                + " ".join(argv if argv is not None else sys.argv[1:]),
                "repeats": args.repeats,
                "backend": os.environ.get("KERAS_BACKEND", "tensorflow"),
                "python": platform.python_version(),
                "rows": rows,
            }, f, indent=2)
            f.write("\n")


if __name__ == "__main__":
    main()
