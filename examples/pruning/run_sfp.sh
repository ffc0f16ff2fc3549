#!/bin/sh
# The runs behind docs/results/sfp (ResNet-20, Fashion-MNIST, CPU-scaled).
# Writes under runs/sfp/resnet20 by default; OUT=docs/results/sfp/resnet20
# regenerates the committed results.
set -e
OUT=${OUT:-runs/sfp/resnet20}
COMMON="--depth 20 --epochs 6 --limit-train 8192 --val-batches 20 \
  --batch-size 128 --seed 0 --verbose 2"
for method in baseline sfp fpgm; do
  python examples/pruning/train_sfp.py --method "$method" $COMMON \
    --output-dir "$OUT/$method"
done
python examples/pruning/train_sfp.py --compare "$OUT" > "$OUT/summary.md"
