"""Markdown tables of the runs of `examples/nddr/run_all.sh`.

    python examples/nddr/summarize.py docs/results/nddr \
        > docs/results/nddr/tables.md

Methods: mean ± std over seeds. Ablations (one seed): the initialisation
and learning-rate tables include the seed-0 NDDR run of the methods table,
which is the paper's default (diagonal (0.9, 0.1), 100x).
"""

import argparse
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from report import find_runs, format_stat, lookup  # noqa: E402

METRICS = (("test.label_accuracy", "class acc."),
           ("test.rotation_accuracy", "rotation acc."))


def table(rows, key_names):
    """rows: list of (key tuple, runs) -> Markdown."""
    header = [*key_names, *(m[1] for m in METRICS), "runs"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for key, runs in rows:
        cells = [format_stat([lookup(r, m) for r in runs], 4)
                 for m, _ in METRICS]
        lines.append("| " + " | ".join([*map(str, key), *cells,
                                         str(len(runs))]) + " |")
    return "\n".join(lines)


def main(root):
    root = pathlib.Path(root)
    methods = find_runs(root / "methods")
    order = ["single", "shared", "cross_stitch", "nddr", "nddr_shortcut"]
    rows = []
    for method in order:
        runs = [r for r in methods if lookup(r, "method") == method]
        if runs:
            rows.append(((method, lookup(runs[0], "params")), runs))
    print("### Methods\n")
    print(table(rows, ["method", "params"]))
    default = [r for r in methods
               if lookup(r, "method") == "nddr" and lookup(r, "seed") == 0]

    init_runs = find_runs(root / "init") + default
    rows = []
    for run in sorted(init_runs, key=lambda r: (
            lookup(r, "init") != "diagonal", -lookup(r, "alpha"))):
        if lookup(run, "init") == "xavier":
            key = ("xavier", "")
        else:
            key = (lookup(run, "alpha"), lookup(run, "beta"))
        rows.append((key, [run]))
    print("\n### NDDR initialisation (seed 0)\n")
    print(table(rows, ["alpha", "beta"]))

    lr_runs = find_runs(root / "lr") + default
    rows = [((f"{lookup(r, 'fusion_lr_multiplier'):g}x",), [r])
            for r in sorted(lr_runs,
                            key=lambda r: lookup(r, "fusion_lr_multiplier"))]
    print("\n### NDDR learning-rate multiplier (SGD, seed 0)\n")
    print(table(rows, ["NDDR lr"]))

    adam = find_runs(root / "adam")
    rows = [((f"{lookup(r, 'fusion_lr_multiplier'):g}x",
              lookup(r, "learning_rate")), [r])
            for r in sorted(adam,
                            key=lambda r: lookup(r, "fusion_lr_multiplier"))]
    print("\n### Adam (seed 0)\n")
    print(table(rows, ["NDDR lr", "base lr"]))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "root", nargs="?", default="docs/results/nddr",
        help="the OUT folder of run_all.sh (default: %(default)s)")
    main(parser.parse_args().root)
