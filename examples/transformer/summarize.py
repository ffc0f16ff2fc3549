"""Prints the ViT pruning results (docs/results/pruning/vit/seed_*.json)
as a Markdown table, one row per seed and variant.

    python examples/transformer/summarize.py
"""

import argparse
import glob
import json
import os

RESULTS_DIR = os.path.join("docs", "results", "pruning", "vit")


def rows(result):
    base = result["base"]
    seed = result["seed"]
    yield (
        f"| {seed} | base | - | {100 * base['accuracy']:.2f}% | - | - "
        f"| {base['macs'] / 1e6:.2f} M | {base['params']:,} | - | - |"
    )
    for v in result["variants"]:
        b1, p1 = v["latency"]["batch_1_ms"]
        b64, p64 = v["latency"]["batch_64_ms"]
        difference = v["compaction_difference"]
        cut = 1 - v["macs"] / base["macs"]
        mode = "exact" if v["exact"] else (
            f"inexact (max diff {difference['max_abs']:.2g})"
        )
        yield (
            f"| {seed} | {int(100 * v['rate'])}% | {mode} "
            f"| {100 * v['accuracy_masked']:.2f}% "
            f"| {100 * v['accuracy_pruned']:.2f}% "
            f"| {100 * v['accuracy_finetuned']:.2f}% "
            f"| {v['macs'] / 1e6:.2f} M ({100 * cut:.0f}% cut) "
            f"| {v['params']:,} | {p1:.1f} / {b1:.1f} ms "
            f"| {p64:.1f} / {b64:.1f} ms |"
        )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results-dir", default=RESULTS_DIR)
    args = parser.parse_args()
    print(
        "| seed | pruned | mode | accuracy masked | after compaction "
        "| after fine-tuning | MACs | params | latency b1 pruned / base "
        "| latency b64 pruned / base |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    pattern = os.path.join(args.results_dir, "seed_*.json")
    for path in sorted(glob.glob(pattern)):
        with open(path) as f:
            for row in rows(json.load(f)):
                print(row)


if __name__ == "__main__":
    main()
