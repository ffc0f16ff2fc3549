"""Prints the cross-task results (transfer.py, prune.py) as Markdown tables.

    python examples/cross_task/summarize.py docs/results/cross_task
"""

import argparse
import json
import pathlib


def _ms(summary, scale=1.0, digits=1):
    """`mean ± std` over the partitions; one partition has no spread, so
    its value alone (the tables' "partitions" column says how many)."""
    if not summary:
        return "–"
    mean = f"{scale * summary['mean']:.{digits}f}"
    if summary.get("n") == 1:
        return mean
    return f"{mean} ± {scale * summary['std']:.{digits}f}"


def transfer_table(path):
    results = json.loads(path.read_text())
    lines = [
        f"Primary network `{results['primary']['name']}` "
        f"({results['primary']['params']:,} parameters).", "",
        "| task | kind | best layer (per partition) | linear probe, test "
        "acc. % | transfer learning, test acc. % | probe s | TL s | TL / "
        "probe time | partitions |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in results["tasks"].items():
        best = ", ".join(run["regression"]["best_layer"] for run in r["runs"])
        lines.append(
            f"| {name} | {r['kind']} | {best} | "
            f"{_ms(r['regression_accuracy'], 100)} | "
            f"{_ms(r['transfer_accuracy'], 100)} | "
            f"{_ms(r['regression_seconds'])} | "
            f"{_ms(r['transfer_seconds'])} | {_ms(r['speedup'])}x | "
            f"{len(r['runs'])} |")
    return "\n".join(lines)


def prune_table(path):
    results = json.loads(path.read_text())
    lines = [
        f"Primary network `{results['primary']['name']}` "
        f"({results['primary']['params']:,} parameters).", "",
        "| task | t | best layer | size cut % | MACs cut % | test acc. % "
        "(head refit) | after fine-tuning % | partitions |",
        "|---|---|---|---|---|---|---|---|",
    ]
    speed = ["", "| task | batch 1 speed-up | batch 64 speed-up |",
             "|---|---|---|"]
    for name, r in results["tasks"].items():
        for t, s in r["summary"].items():
            lines.append(
                f"| {name} | {t} | {', '.join(sorted(set(s['best_layers'])))}"
                f" | {_ms(s['size_reduction'], 100, 2)} | "
                f"{_ms(s['macs_reduction'], 100, 2)} | "
                f"{_ms(s['test_accuracy_refit'], 100)} | "
                f"{_ms(s['test_accuracy_finetuned'], 100)} | "
                f"{len(s['best_layers'])} |")
        sp = r["inference_speed"]
        speed.append(f"| {name} | {sp['batch_1']['speedup']:.2f}x | "
                     f"{sp['batch_64']['speedup']:.2f}x |")
    return "\n".join(lines + speed)


def main(root):
    root = pathlib.Path(root)
    for path in sorted(root.glob("transfer/*/results.json")):
        print(f"### transfer: {path.parent.name}\n")
        print(transfer_table(path), "\n")
    for path in sorted(root.glob("prune/*/results.json")):
        print(f"### prune: {path.parent.name}\n")
        print(prune_table(path), "\n")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        epilog="Mean ± std over the partitions (n = their number).")
    parser.add_argument(
        "root", nargs="?", default="docs/results/cross_task",
        help="folder holding transfer/*/results.json and "
             "prune/*/results.json (default: %(default)s)")
    main(parser.parse_args().root)
