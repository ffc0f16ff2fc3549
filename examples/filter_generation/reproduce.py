"""Runs the grid of the paper's Tables 1-2 with `train.py`, one process each.

Configurations: the static baseline; filter generation with
n_ae in {5, 10, 20} at s = 5 (Table 1) and s in {2, 10} at n_ae = 20
(Table 2; s = 5, n_ae = 20 is shared with Table 1); each for every seed.
Each run writes `<output-root>/<config>/seed<k>/results.json`; then

    python examples/report.py <output-root> \\
        --group model encoder_filters repository_size \\
        --metrics accuracy_epoch_1 accuracy_final \\
        sample_specificity.swapped_accuracy

prints the table. The paper's protocol is `--epochs 20 --seeds 0 1 2` on the
full training set; the run in the docs is smaller (see the docs page):

    nice -n 10 python examples/filter_generation/reproduce.py \\
        --output-root docs/results/filter_generation \\
        --epochs 3 --seeds 0 1 --limit-train 8000
"""

import argparse
import os
import subprocess
import sys
import time

CONFIGS = [
    ("baseline", ["--model", "baseline"]),
    *[
        (
            f"nae{n}_s{s}",
            ["--model", "generated", "--encoder-filters", str(n),
             "--repository-size", str(s)],
        )
        for n, s in ((5, 5), (10, 5), (20, 5), (20, 2), (20, 10))
    ],
]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output-root", default="runs/filter_generation")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--limit-train", type=int, default=None)
    parser.add_argument("--specificity-samples", type=int, default=10000)
    parser.add_argument(
        "--configs",
        nargs="*",
        default=None,
        help=f"subset of {[name for name, _ in CONFIGS]}",
    )
    parser.add_argument(
        "extra", nargs="*", help="more train.py flags (after --)"
    )
    args = parser.parse_args(argv)
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                          "train.py")
    for seed in args.seeds:
        for name, flags in CONFIGS:
            if args.configs and name not in args.configs:
                continue
            output = os.path.join(args.output_root, name, f"seed{seed}")
            command = [
                sys.executable, script, *flags,
                "--epochs", str(args.epochs),
                "--seed", str(seed),
                "--specificity-samples", str(args.specificity_samples),
                "--output-dir", output,
                "--verbose", "2",
                *(["--limit-train", str(args.limit_train)]
                  if args.limit_train else []),
                *args.extra,
            ]
            print(f"[{time.strftime('%H:%M:%S')}] {name} seed {seed}",
                  flush=True)
            subprocess.run(command, check=True)


if __name__ == "__main__":
    main()
