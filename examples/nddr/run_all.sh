#!/usr/bin/env bash
# The runs behind the tables of docs/layers/nddr.md (CPU, nice'd). Scale with
# EPOCHS, LIMIT (training images) and SEEDS; results land in
# $OUT/{methods,init,lr,adam}/.../results.json, OUT=runs/nddr by default
# (OUT=docs/results/nddr regenerates the committed results). A run whose
# results.json exists is skipped, so a stopped sweep resumes.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-python}
EPOCHS=${EPOCHS:-3}
LIMIT=${LIMIT:-12000}
SEEDS=${SEEDS:-"0 1 2"}
OUT=${OUT:-runs/nddr}
common=(--epochs "$EPOCHS" --limit-train "$LIMIT" --validation-freq "$EPOCHS"
        --verbose 0)

run() {  # run DIR ARGS...
  local dir=$1; shift
  if [ -f "$dir/results.json" ]; then echo "skip $dir (results.json exists)"; return; fi
  nice -n 10 "$PY" examples/nddr/train.py "${common[@]}" --output-dir "$dir" "$@"
}

methods() {  # methods SEED
  for method in single shared cross_stitch nddr nddr_shortcut; do
    run "$OUT/methods/$method/seed$1" --method "$method" --seed "$1"
  done
}

# 1. The five networks, first seed (the ablations below reuse its NDDR run).
first=${SEEDS%% *}
methods "$first"
# 2. NDDR initialisation (paper Table 1); (0.9, 0.1) is run 1's.
for ab in "1.0 0.0" "0.5 0.5" "0.1 0.9" "0.0 1.0"; do
  set -- $ab
  run "$OUT/init/alpha$1_beta$2" --method nddr --alpha "$1" --beta "$2" \
    --seed "$first"
done
run "$OUT/init/xavier" --method nddr --init xavier --seed "$first"
# 3. NDDR learning-rate multiplier (paper Table 2); 100x is run 1's.
for m in 1 10 1000; do
  run "$OUT/lr/x$m" --method nddr --fusion-lr-multiplier "$m" --seed "$first"
done
# 4. Adam with and without the 100x multiplier.
for m in 1 100; do
  run "$OUT/adam/x$m" --method nddr --optimizer adam --learning-rate 1e-3 \
    --fusion-lr-multiplier "$m" --seed "$first"
done
# 5. The other seeds of the five networks.
for seed in ${SEEDS#"$first"}; do
  methods "$seed"
done
