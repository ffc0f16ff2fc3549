#!/bin/sh
# Every run behind the tables of docs/layers/wsoftmax_head.md, scaled to fit
# ~30 minutes of a shared 2-core CPU: 4 epochs of 150 steps (batch 128, i.e.
# 76,800 images, ~1.3 passes over Fashion-MNIST), a CNN of 8/16 channels.
# Usage: sh examples/wsoftmax/sweep.sh [OUT] [SEEDS] [all|main|width]
# (OUT: runs/wsoftmax/sweep; docs/results/wsoftmax/runs regenerates the docs')
# (`main`: only the Dense vs W-Softmax comparison at width 10(K-1);
# `width`: only the FC widths K-1 and 2(K-1)).
set -e
OUT=${1:-runs/wsoftmax/sweep}
SEEDS=${2:-"0 1"}
PART=${3:-all}
PY=${PYTHON:-python}
COMMON="--dataset fashion_mnist --epochs 4 --steps-per-epoch 150 --verbose 0"
run() { name=$1; shift; $PY examples/wsoftmax/train.py $COMMON "$@" \
  --output-dir "$OUT/$name" | tail -1; }
width_runs() {
  # FC width K-1 and 2(K-1) (10(K-1) is the main comparison).
  for multiple in 1 2; do
    width=$((9 * multiple))
    run "softmax/w$width/seed$1" --head softmax --fc-multiple "$multiple" \
      --seed "$1"
    run "wsoftmax_refine/alpha1.5/w$width/seed$1" --head wsoftmax \
      --alpha 1.5 --softmax-epochs 2 --fc-multiple "$multiple" --seed "$1"
  done
}
if [ "$PART" = width ]; then
  for seed in $SEEDS; do width_runs "$seed"; done
  exit 0
fi
for seed in $SEEDS; do
  # Main comparison at FC width 10(K-1); W-Softmax refines a softmax start.
  run "softmax/w90/seed$seed" --head softmax --seed "$seed"
  for alpha in 0.5 1.0 1.5; do
    run "wsoftmax_refine/alpha$alpha/w90/seed$seed" --head wsoftmax \
      --alpha "$alpha" --softmax-epochs 2 --seed "$seed"
  done
done
[ "$PART" = main ] && exit 0
# W-Softmax from the first step (no softmax start), one seed.
run "wsoftmax_scratch/alpha1.0/w90/seed0" --head wsoftmax --alpha 1.0 --seed 0
for seed in $SEEDS; do width_runs "$seed"; done
# Experiment (not the paper's loss): negatives biased by alpha*max(z_y, 0).
for alpha in 1.0 1.5; do
  run "wsoftmax_positive_refine/alpha$alpha/w90/seed0" \
    --head wsoftmax_positive --alpha "$alpha" --softmax-epochs 2
done
