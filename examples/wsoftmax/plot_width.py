"""Plot test accuracy against the FC (feature) width from example runs.

Reads every `results.json` under a folder written by
`examples/wsoftmax/train.py` and draws test accuracy (mean, with error bars
of one sample standard deviation over the seeds where there are two or more)
against the feature width, one line per head (and alpha), with the
widths marked in units of K-1, the paper's minimum.

    python examples/wsoftmax/plot_width.py docs/results/wsoftmax/runs \\
        --output docs/results/wsoftmax/accuracy_vs_width.png
"""

import argparse
import collections
import json
import pathlib
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def load(root):
    series = collections.defaultdict(lambda: collections.defaultdict(list))
    min_dim = None
    for path in sorted(pathlib.Path(root).rglob("results.json")):
        result = json.loads(path.read_text())
        args = result["arguments"]
        if args["head"] == "softmax":
            label = "Dense + softmax"
        else:
            name = {"wsoftmax": "W-Softmax"}.get(args["head"], args["head"])
            start = "softmax start" if args["softmax_epochs"] else "scratch"
            label = f"{name} α={args['alpha']:g} ({start})"
        series[label][result["fc_width"]].append(result["test"]["accuracy"])
        min_dim = result["min_feature_dim"]
    return series, min_dim


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root")
    parser.add_argument("--output", required=True)
    parser.add_argument(
        "--min-widths", type=int, default=2,
        help="plot only series measured at this many widths or more",
    )
    args = parser.parse_args(argv)
    series, min_dim = load(args.root)
    plotted = {
        label: by_width for label, by_width in series.items()
        if len(by_width) >= args.min_widths
    }
    if not plotted:
        # An empty plot would look like a result.
        found = ", ".join(
            f"{label}: {len(by_width)}" for label, by_width in
            sorted(series.items())) or "no results.json"
        print(f"nothing to plot: no series under {args.root} has results at "
              f"{args.min_widths} or more FC widths ({found}); "
              f"{args.output} not written", file=sys.stderr)
        return 1
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    for label, by_width in sorted(plotted.items()):
        widths = sorted(by_width)
        values = [np.asarray(by_width[w]) * 100 for w in widths]
        means = [v.mean() for v in values]
        # Sample std (ddof=1), as the docs' "mean ± std" tables.
        stds = [v.std(ddof=1) if v.size > 1 else 0.0 for v in values]
        ax.errorbar(widths, means, yerr=stds, marker="o", capsize=3,
                    label=label)
    widths = sorted({w for s in plotted.values() for w in s})
    ax.set_xscale("log")
    ax.set_xticks(widths)
    ax.set_xticklabels(
        [f"{w}\n({w / min_dim:g}(K-1))" for w in widths], fontsize=8
    )
    ax.set_xlabel("FC feature width")
    ax.set_ylabel("test accuracy (%), mean ± std")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(args.output, dpi=110)
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
