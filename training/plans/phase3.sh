#!/usr/bin/env bash
# Phase 3, GPU call 1 (one H100, < 10 min, all jobs in parallel; the faster Skim-LSTM training step of
# training/torch_models.py: fused input projections + one torch.compile'd step).
#   IMDb:  Skim-LSTM variants (d'=10, gamma 0.02/0.05/0.1, one with batch 128) from the shipped imdb-lstm,
#          for the whole call; two longer-trained LSTM baselines (candidates for a skim in call 2).
#   SST-2, MR: LSTM baseline variants (dropout 0.5, forget-gate bias 1, weight decay, d=200, reseed) for
#          ~140 s; the best on dev (d=100 unless d=200 is >= 1 point better; the shipped LSTM competes too)
#          is the start of Skim-LSTM variants for the rest of the call.
# Selection is on the dev split only. Usage: bash training/plans/phase3.sh RUNS LOGS [PACK_DEST]
# Data: .carry/data (sst2 train/dev, mr, imdb train) and .carry/glove (python -m training.glove_subset).
# SMOKE=1: a tiny local run of the same plumbing (--limit 200 --max-steps 20, short budgets).
set -u
RUNS=${1:-runs3}; LOGS=${2:-logs3}; PACK=${3:-}; mkdir -p "$RUNS" "$LOGS"
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1 TORCHINDUCTOR_COMPILE_THREADS=1 SKIMSERVE_GLOVE_SUBSET=.carry/glove
TOTAL=${TOTAL:-530}; LSTM_S=${LSTM_S:-140}
C="--data-dir .carry/data --vocab-cache .carry/vocab --out-dir $RUNS"
if [ "${SMOKE:-0}" = 1 ]; then C="$C --limit 200 --max-steps 20 --eval-every 10"; TOTAL=${TOTAL_SMOKE:-200}; LSTM_S=20; fi
END=$((SECONDS + TOTAL))
left() { local l=$((END - SECONDS)); echo $(( l > 1 ? l : 1 )); }
# each job: its own --time-budget inside; SIGTERM (graceful: best checkpoint still written) at the deadline
py() { timeout -k 20 "$(left)" python3 -m training.train "$@"; }
nvidia-smi --query-gpu=name,memory.used,memory.total --format=csv 2>/dev/null | tee "$LOGS/gpu.txt"
python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)" 2>&1 | tee -a "$LOGS/gpu.txt"

LSTMS=(
  "lstm-p5|--dropout 0.5"
  "lstm-p5-fb1|--dropout 0.5 --forget-bias 1"
  "lstm-p5-wd|--dropout 0.5 --weight-decay 1e-5 --batch-size 64"
  "lstm-d200-p5|--d 200 --dropout 0.5"
  "lstm-s2|--seed 2"
)
SKIMS=(
  "skim-d20-g02|--d-small 20 --gamma 0.02"
  "skim-d20-g015|--d-small 20 --gamma 0.015"
  "skim-d10-g02|--d-small 10 --gamma 0.02"
)
short_ds() {  # SST-2 / MR: LSTM variants, pick on dev, Skim-LSTM variants from the pick
  local ds=$1 spec
  for spec in "${LSTMS[@]}"; do
    py --dataset $ds --family lstm --name "$ds-${spec%%|*}" --tune-embeddings $C --eval-every 100 --patience 2000 \
      --time-budget $LSTM_S ${spec#*|} > "$LOGS/$ds-${spec%%|*}.log" 2>&1 &
  done
  wait
  local base
  base=$(python3 -m training.pick --prefer-hidden 100 --margin 0.01 "$RUNS"/$ds-lstm-* models/$ds-lstm 2> "$LOGS/$ds-pick.txt")
  echo "$base" >> "$LOGS/$ds-pick.txt"; cat "$LOGS/$ds-pick.txt"
  local budget=$(( $(left) - 25 ))
  for spec in "${SKIMS[@]}"; do
    py --dataset $ds --family skim --name "$ds-${spec%%|*}" --init-from "$base" $C --eval-every 100 --lr 5e-4 \
      --min-skim 0.5 --patience 3000 --time-budget $budget ${spec#*|} > "$LOGS/$ds-${spec%%|*}.log" 2>&1 &
  done
  wait
}

IMDB_SKIMS=(
  "skim-d10-g02|--gamma 0.02"
  "skim-d10-g05|--gamma 0.05"
  "skim-d10-g10|--gamma 0.1"
  "skim-d10-g05-b128|--gamma 0.05 --batch-size 128 --lr 1e-3"
)
IMDB_LSTMS=(
  "lstm-long|--dropout 0.3"
  "lstm-p5-l512|--dropout 0.5 --max-len 512"
)
budget=$(( TOTAL - 20 ))
for spec in "${IMDB_SKIMS[@]}"; do
  py --dataset imdb --family skim --name "imdb-${spec%%|*}" --init-from models/imdb-lstm $C --eval-every 200 \
    --d-small 10 --lr 5e-4 --batch-size 64 --max-len 256 --min-skim 0.75 --patience 4000 --time-budget $budget \
    ${spec#*|} > "$LOGS/imdb-${spec%%|*}.log" 2>&1 &
done
for spec in "${IMDB_LSTMS[@]}"; do
  py --dataset imdb --family lstm --name "imdb-${spec%%|*}" --tune-embeddings $C --eval-every 200 --batch-size 64 \
    --max-len 400 --patience 3000 --time-budget $budget ${spec#*|} > "$LOGS/imdb-${spec%%|*}.log" 2>&1 &
done
short_ds sst2 &
short_ds mr &
wait
echo "== done at ${SECONDS}s"
for f in "$RUNS"/*/manifest.json; do
  python3 -c "import json,sys; m=json.load(open(sys.argv[1])); t=m['training']; print(f\"{m['name']:28s} d={m['sizes']['hidden']} dev={t['dev_accuracy']:.4f} skim={t['dev_skim_rate']:.3f} step={t['best_step']} s={t['seconds']}\")" "$f"
done | tee "$LOGS/summary.txt"
for f in "$LOGS"/*.log; do  # steps/s and whether the compiled step was used
  echo "$(basename "$f") $(grep -o '"compiled_step": [a-z]*' "$f" | head -1) $(grep -o '"steps": [0-9]*' "$f" | tail -1)"
done | tee "$LOGS/speed.txt"
if [ -n "$PACK" ]; then
  keep=$(for ds in sst2 mr; do tail -1 "$LOGS/$ds-pick.txt" | xargs basename; done)
  python3 training/plans/pack.py "$PACK" "$RUNS" "$LOGS" $keep \
    $(cd "$RUNS" && ls -d sst2-skim-* mr-skim-* imdb-skim-* imdb-lstm-* 2>/dev/null)
fi
