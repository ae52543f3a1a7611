#!/usr/bin/env bash
# Phase 4, GPU call 2 (one H100, < 10 min, jobs in parallel), from call 1's dev-best IMDb LSTM
# (imdb-lmlstm-lr5: language-model pretrained, then fine-tuned; carried in .carry/bases):
#   IMDb:  Skim-LSTM variants from it for the whole call; the LSTM itself trained on (it was still improving).
#   SST-2, MR: LSTMs fine-tuned from it (vocabulary extended; .carry/glove-ext holds the rows that needs),
#          pick on dev (the shipped LSTM competes), then Skim-LSTM variants from the pick.
# Selection is on dev splits only. Usage: bash training/plans/phase4b.sh RUNS LOGS [PACK_DEST]
set -u
RUNS=${1:-runs4b}; LOGS=${2:-logs4b}; PACK=${3:-}; mkdir -p "$RUNS" "$LOGS"
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1 TORCHINDUCTOR_COMPILE_THREADS=1 SKIMSERVE_GLOVE_SUBSET=.carry/glove-ext
TOTAL=${TOTAL:-530}; LSTM_S=${LSTM_S:-130}
BASE=.carry/bases/imdb-lmlstm-lr5
C="--data-dir .carry/data --out-dir $RUNS"
if [ "${SMOKE:-0}" = 1 ]; then C="$C --limit 200 --max-steps 20 --eval-every 10"; TOTAL=${TOTAL_SMOKE:-200}; LSTM_S=30; fi
if [ ! -f .carry/data/imdb/train.jsonl.gz ] && [ -f .carry/pack/imdb_train.jsonl.xz ]; then
  mkdir -p .carry/data/imdb
  python3 -c "import gzip, lzma, shutil; shutil.copyfileobj(lzma.open('.carry/pack/imdb_train.jsonl.xz'), gzip.open('.carry/data/imdb/train.jsonl.gz', 'wb', 1))"
fi
END=$((SECONDS + TOTAL))
left() { local l=$((END - SECONDS)); echo $(( l > 1 ? l : 1 )); }
py() { timeout -k 20 "$(left)" python3 -m training.train "$@"; }
nvidia-smi --query-gpu=name,memory.used,memory.total --format=csv 2>/dev/null | tee "$LOGS/gpu.txt"

IMDB_SKIMS=(
  "skim-lm-g05-b256|--gamma 0.05 --batch-size 256 --lr 1e-3"
  "skim-lm-g03-b256|--gamma 0.03 --batch-size 256 --lr 1e-3"
  "skim-lm-g02-b64|--gamma 0.02 --batch-size 64 --lr 5e-4"
  "skim-lm-g05-b128-l400|--gamma 0.05 --batch-size 128 --lr 1e-3 --max-len 400"
)
for spec in "${IMDB_SKIMS[@]}"; do
  py --dataset imdb --family skim --name "imdb-${spec%%|*}" --init-from $BASE $C --eval-every 100 --d-small 10 \
    --max-len 256 --min-skim 0.75 --patience 4000 --time-budget $(( TOTAL - 15 )) ${spec#*|} \
    > "$LOGS/imdb-${spec%%|*}.log" 2>&1 &
done
py --dataset imdb --family lstm --name imdb-lmlstm-lr5-more --init-from $BASE --tune-embeddings $C --eval-every 200 \
  --batch-size 64 --max-len 400 --dropout 0.5 --lr 3e-4 --patience 3000 --time-budget $(( TOTAL - 15 )) \
  > "$LOGS/imdb-lmlstm-lr5-more.log" 2>&1 &

SHORT_LSTMS=(
  "ylstm-lr3|--lr 3e-4"
  "ylstm-lr10|--lr 1e-3"
)
SKIMS=(
  "yskim-d20-g02|--d-small 20 --gamma 0.02"
  "yskim-d20-g03|--d-small 20 --gamma 0.03"
  "yskim-d10-g02|--d-small 10 --gamma 0.02"
)
short_ds() {
  local ds=$1 spec
  for spec in "${SHORT_LSTMS[@]}"; do
    py --dataset $ds --family lstm --name "$ds-${spec%%|*}" --init-from $BASE --tune-embeddings $C \
      --dropout 0.5 --eval-every 100 --patience 1500 --time-budget $LSTM_S ${spec#*|} > "$LOGS/$ds-${spec%%|*}.log" 2>&1 &
  done
  wait
  local base
  base=$(python3 -m training.pick --prefer-hidden 100 "$RUNS"/$ds-ylstm-* models/$ds-lstm 2> "$LOGS/$ds-pick.txt")
  echo "$base" >> "$LOGS/$ds-pick.txt"; cat "$LOGS/$ds-pick.txt"
  for spec in "${SKIMS[@]}"; do
    py --dataset $ds --family skim --name "$ds-${spec%%|*}" --init-from "$base" $C --eval-every 100 --lr 5e-4 \
      --min-skim 0.5 --patience 4000 --time-budget $(( $(left) - 20 )) ${spec#*|} > "$LOGS/$ds-${spec%%|*}.log" 2>&1 &
  done
  wait
}
short_ds sst2 &
short_ds mr &
wait
echo "== done at ${SECONDS}s"
for f in "$RUNS"/*/manifest.json; do
  python3 -c "import json,sys; m=json.load(open(sys.argv[1])); t=m['training']; print(f\"{m['name']:28s} d={m['sizes']['hidden']} dev={t['dev_accuracy']:.4f} skim={t['dev_skim_rate']:.3f} step={t['best_step']} s={t['seconds']}\")" "$f"
done | tee "$LOGS/summary.txt"
if [ -n "$PACK" ]; then
  keep=$(for ds in sst2 mr; do tail -1 "$LOGS/$ds-pick.txt" | xargs basename; done)
  python3 training/plans/pack.py "$PACK" "$RUNS" "$LOGS" $keep \
    $(cd "$RUNS" && ls -d sst2-yskim-* mr-yskim-* imdb-skim-lm-* imdb-lmlstm-lr5-more 2>/dev/null)
fi
