#!/usr/bin/env bash
# Phase 3, GPU call 2 (one H100, < 10 min): IMDb Skim-LSTM variants (d'=10) from the phase-3 imdb-lstm
# (imdb-lstm-p5-l512, dev 0.9144, published as models/imdb-lstm after call 1). Call 1 showed the step rate
# is bound by the number of small GPU kernels across all parallel jobs (batch 128 ran as many steps as 64),
# so this call runs only IMDb jobs, with batches of 128-256 (more reviews per kernel) and lr 1e-3..2e-3.
# Selection on the dev split only (skim rate >= 0.75). Usage: bash training/plans/phase3b.sh RUNS LOGS [PACK_DEST]
set -u
RUNS=${1:-runs3b}; LOGS=${2:-logs3b}; PACK=${3:-}; mkdir -p "$RUNS" "$LOGS"
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1 TORCHINDUCTOR_COMPILE_THREADS=1
TOTAL=${TOTAL:-545}
C="--data-dir .carry/data --out-dir $RUNS"
if [ "${SMOKE:-0}" = 1 ]; then C="$C --limit 200 --max-steps 20"; TOTAL=${TOTAL_SMOKE:-150}; fi
END=$((SECONDS + TOTAL))
left() { local l=$((END - SECONDS)); echo $(( l > 1 ? l : 1 )); }
py() { timeout -k 20 "$(left)" python3 -m training.train "$@"; }
nvidia-smi --query-gpu=name,memory.used,memory.total --format=csv 2>/dev/null | tee "$LOGS/gpu.txt"
IMDB_SKIMS=(
  "skim2-g05-b256|--gamma 0.05 --batch-size 256 --lr 1e-3 --eval-every 100"
  "skim2-g03-b256|--gamma 0.03 --batch-size 256 --lr 1e-3 --eval-every 100"
  "skim2-g05-b128|--gamma 0.05 --batch-size 128 --lr 1e-3 --eval-every 200"
  "skim2-g03-b128|--gamma 0.03 --batch-size 128 --lr 1e-3 --eval-every 200"
  "skim2-g05-b256-l400|--gamma 0.05 --batch-size 256 --lr 1e-3 --eval-every 100 --max-len 400"
  "skim2-g04-b256-lr2|--gamma 0.04 --batch-size 256 --lr 2e-3 --eval-every 100"
)
budget=$(( TOTAL - 20 ))
for spec in "${IMDB_SKIMS[@]}"; do
  py --dataset imdb --family skim --name "imdb-${spec%%|*}" --init-from models/imdb-lstm $C --d-small 10 \
    --max-len 256 --min-skim 0.75 --patience 4000 --time-budget $budget ${spec#*|} > "$LOGS/imdb-${spec%%|*}.log" 2>&1 &
done
wait
echo "== done at ${SECONDS}s"
for f in "$RUNS"/*/manifest.json; do
  python3 -c "import json,sys; m=json.load(open(sys.argv[1])); t=m['training']; print(f\"{m['name']:28s} d={m['sizes']['hidden']} dev={t['dev_accuracy']:.4f} skim={t['dev_skim_rate']:.3f} step={t['best_step']} s={t['seconds']}\")" "$f"
done | tee "$LOGS/summary.txt"
for f in "$LOGS"/*.log; do
  echo "$(basename "$f") $(grep -o '"compiled_step": [a-z]*' "$f" | head -1) $(grep -o '"steps": [0-9]*' "$f" | tail -1)"
done | tee "$LOGS/speed.txt"
if [ -n "$PACK" ]; then
  python3 training/plans/pack.py "$PACK" "$RUNS" "$LOGS" $(cd "$RUNS" && ls -d imdb-* 2>/dev/null)
fi
