"""Turn a folder of example runs into a Markdown table.

Every `results.json` below the folder is one run. Runs of different example
scripts get one table each. Runs are grouped by the argument values named
with `--group` (default: every argument of the script that differs between
its runs, except the seed, folders and verbosity); each metric is shown as
mean ± std over the runs of a group, with the number of runs.

    python examples/report.py runs/ --metrics test.accuracy wall_seconds
    python examples/report.py docs/results/lightcnn --group dataset epochs
"""

import argparse
import json
import pathlib
import statistics
import sys

IGNORED = {"seed", "output_dir", "data_dir", "verbose"}


def find_runs(root):
    """Every `results.json` under `root`, loaded, with its path."""
    runs = []
    for path in sorted(pathlib.Path(root).rglob("results.json")):
        with open(path) as f:
            result = json.load(f)
        result["_path"] = str(path)
        runs.append(result)
    return runs


def lookup(result, dotted):
    """`result["a"]["b"]` for `"a.b"`; arguments are found by name too."""
    value = result
    for key in dotted.split("."):
        if not isinstance(value, dict) or key not in value:
            value = None
            break
        value = value[key]
    if value is None and "." not in dotted:
        value = result.get("arguments", {}).get(dotted)
    if isinstance(value, list) and value and not isinstance(value[0], dict):
        value = value[-1]  # last epoch of a history series
    return value


def script(result):
    """The example script of a run (from its recorded command line)."""
    for word in str(result.get("command", "")).split():
        if word.endswith(".py"):
            parts = pathlib.PurePath(word).parts
            return "/".join(parts[parts.index("examples"):]) \
                if "examples" in parts else parts[-1]
    return "unknown script"


def argument(result, name):
    """An argument's value (an argument, not a result key of the same
    name such as `dataset`), else `lookup`."""
    arguments = result.get("arguments", {})
    value = arguments[name] if name in arguments else lookup(result, name)
    if isinstance(value, list):
        return ",".join(map(str, value))
    return value


def varying_arguments(runs):
    """Arguments every run has, with a scalar value that differs."""
    keys = set.intersection(
        *(set(r.get("arguments", {})) for r in runs)) - IGNORED
    return sorted(
        k
        for k in keys
        if not any(isinstance(r["arguments"][k], dict) for r in runs)
        and len({json.dumps(r["arguments"][k]) for r in runs}) > 1
    )


def format_stat(values, digits):
    values = [v for v in values if isinstance(v, (int, float))]
    if not values:
        return "–"
    mean = statistics.fmean(values)
    if len(values) == 1:
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def markdown_table(runs, group, metrics, digits=4):
    """A Markdown table of `metrics` per `group` (mean ± std, runs)."""
    groups = {}
    for run in runs:
        key = tuple(json.dumps(argument(run, g)) for g in group)
        groups.setdefault(key, []).append(run)
    header = [*group, *metrics, "runs", "seeds"]
    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    for key, members in sorted(groups.items()):
        seeds = sorted({lookup(m, "seed") for m in members}, key=str)
        row = [json.loads(k) for k in key]
        row += [
            format_stat([lookup(m, metric) for m in members], digits)
            for metric in metrics
        ]
        row += [len(members), ",".join(str(s) for s in seeds)]
        lines.append("| " + " | ".join(str(v) for v in row) + " |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root")
    parser.add_argument("--group", nargs="*", default=None)
    parser.add_argument(
        "--metrics", nargs="*", default=["test.accuracy", "wall_seconds"]
    )
    parser.add_argument("--digits", type=int, default=4)
    args = parser.parse_args(argv)
    runs = find_runs(args.root)
    if not runs:
        print(f"no results.json under {args.root}", file=sys.stderr)
        return 1
    by_script = {}
    for run in runs:
        by_script.setdefault(script(run), []).append(run)
    for i, (name, members) in enumerate(sorted(by_script.items())):
        group = args.group
        if group is None:
            group = varying_arguments(members)
        if len(by_script) > 1:
            print(("\n" if i else "") + f"### {name} ({len(members)} runs)\n")
        print(markdown_table(members, group, args.metrics, args.digits))
    return 0


if __name__ == "__main__":
    sys.exit(main())
