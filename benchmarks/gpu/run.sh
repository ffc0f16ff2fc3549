#!/usr/bin/env bash
# One run on the GPU machine (Python 3.12, JAX, PyTorch; no TensorFlow, no
# Keras, no network), at most 10 minutes, on Keras's JAX backend:
#   1. installs the bundle's wheels offline (those not already installed);
#   2. the layer tests (tests/layers), a representative subset;
#   3. the FilterGenerator benchmark (FG / Conv2D, target <= 1.3);
#   4. W-Softmax / Dense and NDDR / two single-task step ratios;
#   5. the SFP grid: ResNet-20 at 30% and ResNet-56 at 40%, baseline / SFP /
#      FPGM, 3 seeds, the full Fashion-MNIST training set, $SFP_EPOCHS epochs
#      (default 3: an estimate of what fits; runs unfinished at the
#      deadline are stopped and listed in sfp/grid.json).
# Everything is written under $OUT. Build the bundle first:
#   python benchmarks/gpu/pack.py              # -> build/gpu (< 64 MiB)
#   bash benchmarks/gpu/run.sh build/gpu       # on the GPU machine
#   TINY=1 OUT=/tmp/out bash benchmarks/gpu/run.sh build/gpu   # CPU check
set -u
START=$(date +%s)
BUNDLE=$(cd "${1:-build/gpu}" && pwd)
OUT=${OUT:?set OUT to the folder the results go to}
BUDGET=${GPU_BUDGET_S:-570}          # seconds, of the 600 a run may last
TINY=${TINY:-}
PY=${PYTHON:-python3}
mkdir -p "$OUT"
WORK=$(mktemp -d)
SITE="$WORK/site"
mkdir -p "$SITE"

left() { echo $((START + BUDGET - $(date +%s))); }
step() {  # step NAME SECONDS COMMAND...: time-limited, logged, recorded
  local name=$1 limit=$2; shift 2
  local t0; t0=$(date +%s)
  echo "== $name (limit ${limit}s, $(left)s left)"
  timeout "$limit" "$@" > "$OUT/$name.log" 2>&1
  local rc=$?
  echo "   rc=$rc in $(( $(date +%s) - t0 ))s"
  tail -n 25 "$OUT/$name.log"
  echo "$name $rc $(( $(date +%s) - t0 ))" >> "$OUT/steps.txt"
}

# 1. Wheels, offline: only the distributions this Python lacks (or all with
# FORCE_INSTALL=1), into a folder put first on PYTHONPATH.
MISSING=$("$PY" - "$BUNDLE"/wheels/*.whl <<'PYEOF'
import importlib.metadata, os, sys
for wheel in sys.argv[1:]:
    dist = os.path.basename(wheel).split("-")[0]
    try:
        if not os.environ.get("FORCE_INSTALL"):
            importlib.metadata.version(dist)
            continue
    except importlib.metadata.PackageNotFoundError:
        pass
    print(wheel)
PYEOF
)
if [ -n "$MISSING" ]; then
  echo "installing:" $(for w in $MISSING; do basename "$w"; done)
  # shellcheck disable=SC2086
  "$PY" -m pip install -q --no-index --no-deps --disable-pip-version-check \
      --target "$SITE" $MISSING 2>/dev/null \
    || for w in $MISSING; do "$PY" -m zipfile -e "$w" "$SITE"; done
fi

# The project: this working tree when it travelled, else the bundle's copy.
if [ -d keras_dynfilt ] && [ -f examples/pruning/train_sfp.py ]; then
  PROJECT=$(pwd)
else
  PROJECT="$WORK/project"
  mkdir -p "$PROJECT" && tar -xzf "$BUNDLE/project.tar.gz" -C "$PROJECT"
fi
cd "$PROJECT" || exit 1
export PYTHONPATH="$SITE:$PROJECT${PYTHONPATH:+:$PYTHONPATH}"
export KERAS_BACKEND=jax
export JAX_COMPILATION_CACHE_DIR="$WORK/jax-cache"
export TF_CPP_MIN_LOG_LEVEL=2
DATA="$BUNDLE/fashion-mnist"

"$PY" - > "$OUT/environment.json" <<'PYEOF'
import json, platform, jax, keras, numpy
print(json.dumps({"python": platform.python_version(),
                  "platform": platform.platform(), "jax": jax.__version__,
                  "keras": keras.__version__, "numpy": numpy.__version__,
                  "backend": keras.backend.backend(),
                  "devices": [str(d) for d in jax.devices()]}, indent=2))
PYEOF
cat "$OUT/environment.json"

if [ -n "$TINY" ]; then
  TESTS=(tests/layers/test_mfm.py tests/layers/test_channel_padding.py)
  FG_ARGS=(--rounds 1 --repeats 1)
  SR_ARGS=(--classes 10 --dims 16 --batch-size 8 --steps 2 --rounds 2)
  NDDR_ARGS=(--size 16 --widths 8,16 --convs 1 --batch-size 8 --rounds 1
             --steps 1 --warmup 1)
  SFP_ARGS=(--configs 8:0.3 14:0.4 --seeds 0 --epochs 1 --parallel 3
            --limit-train 256 --steps-per-epoch 2 --batch-size 32
            --val-batches 2 --timing-repeats 2)
  LIMITS=(600 600 300 300)
else
  TESTS=(tests/layers)
  FG_ARGS=()
  SR_ARGS=()
  NDDR_ARGS=(--rounds 5)
  SFP_ARGS=(--configs 20:0.3 56:0.4 --seeds 0 1 2
            --epochs "${SFP_EPOCHS:-3}" --parallel "${SFP_PARALLEL:-18}"
            --batch-size 128 --val-batches 10 --timing-repeats 10)
  LIMITS=(90 60 40 60)
fi

# 2-4. Tests and benchmarks, each within its limit.
step layer_tests "${LIMITS[0]}" "$PY" -m pytest "${TESTS[@]}" -q \
  -p no:cacheprovider --timeout 60 -rfE --junitxml="$OUT/layer_tests.xml"
step filter_generator_benchmark "${LIMITS[1]}" "$PY" \
  benchmarks/filter_generator_jax.py "${FG_ARGS[@]}" \
  --output "$OUT/filter_generator_jax.json"
step wsoftmax_step_ratios "${LIMITS[2]}" "$PY" benchmarks/gpu/step_ratios.py \
  "${SR_ARGS[@]}" --output "$OUT/wsoftmax_step_ratios.json"
step nddr_step_ratios "${LIMITS[3]}" "$PY" benchmarks/nddr.py \
  --jit-compile true "${NDDR_ARGS[@]}" --output "$OUT/nddr_step_ratios.json"

# 5. SFP: the rest of the budget, less 60 s for grid.json and the tables.
DEADLINE=$((START + BUDGET - 60))
step sfp $(( $(left) > 35 ? $(left) - 5 : 30 )) "$PY" benchmarks/gpu/sfp_grid.py \
  --deadline "$DEADLINE" --output-dir "$OUT/sfp" "${SFP_ARGS[@]}" \
  --dataset fashion_mnist --data-dir "$DATA" --verbose 2
find "$OUT" -name log.txt -size +200k -exec truncate -s 200k {} \;
echo "done in $(( $(date +%s) - START ))s; results under $OUT"
rm -rf "$WORK"
