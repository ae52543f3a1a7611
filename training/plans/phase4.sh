#!/usr/bin/env bash
# Phase 4, GPU call 1 (one H100, < 10 min, jobs in parallel): stronger base LSTMs.
#   IMDb:  an LSTM language model pretrained on IMDb train text (Dai & Le 2015), d=100 and d=200, then
#          classifiers fine-tuned from it; a from-scratch d=100 baseline on the same (new, movie-disjoint)
#          dev split for comparison.
#   SST-2, MR: LSTMs fine-tuned from the shipped imdb-lstm (sentiment transfer from IMDb, vocabulary
#          extended with the split's words), pick on dev (the shipped from-scratch LSTM competes), then
#          Skim-LSTM variants from the pick for the rest of the call.
# Selection is on dev splits only. Usage: bash training/plans/phase4.sh RUNS LOGS [PACK_DEST]
# Data: .carry/data, .carry/glove (python -m training.glove_subset), .carry/vocab (vocab cache).
# SMOKE=1: a tiny local run of the same plumbing.
set -u
RUNS=${1:-runs4}; LOGS=${2:-logs4}; PACK=${3:-}; mkdir -p "$RUNS" "$LOGS"
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1 TORCHINDUCTOR_COMPILE_THREADS=1 SKIMSERVE_GLOVE_SUBSET=.carry/glove
TOTAL=${TOTAL:-540}; LSTM_S=${LSTM_S:-150}; LM_S=${LM_S:-210}
C="--data-dir .carry/data --vocab-cache .carry/vocab --out-dir $RUNS"
if [ "${SMOKE:-0}" = 1 ]; then C="$C --limit 200 --max-steps 20 --eval-every 10"; TOTAL=${TOTAL_SMOKE:-300}; LSTM_S=30; LM_S=60; fi
END=$((SECONDS + TOTAL))
left() { local l=$((END - SECONDS)); echo $(( l > 1 ? l : 1 )); }
py() { timeout -k 20 "$(left)" python3 -m training.train "$@"; }
lm() { timeout -k 20 "$(left)" python3 -m training.pretrain_lm "$@"; }
# IMDb train travels xz-compressed (the call's 64 MiB limit); the loaders read .jsonl.gz
if [ ! -f .carry/data/imdb/train.jsonl.gz ] && [ -f .carry/pack/imdb_train.jsonl.xz ]; then
  mkdir -p .carry/data/imdb
  python3 -c "import gzip, lzma, shutil; shutil.copyfileobj(lzma.open('.carry/pack/imdb_train.jsonl.xz'), gzip.open('.carry/data/imdb/train.jsonl.gz', 'wb', 1))"
fi
nvidia-smi --query-gpu=name,memory.used,memory.total --format=csv 2>/dev/null | tee "$LOGS/gpu.txt"

imdb_chain() {  # $1 = hidden size; then "name|flags" classifier variants
  local d=$1; shift
  lm --dataset imdb --name "imdb-lm-d$d" --d "$d" $C --time-budget "$LM_S" --eval-every 500 \
    $( [ "$d" = 100 ] && echo --dropout 0.1 || echo --dropout 0.2 ) > "$LOGS/imdb-lm-d$d.log" 2>&1
  local spec
  for spec in "$@"; do
    py --dataset imdb --family lstm --name "imdb-${spec%%|*}" --init-from "$RUNS/imdb-lm-d$d" --tune-embeddings $C \
      --eval-every 200 --batch-size 64 --max-len 400 --patience 3000 --time-budget $(( $(left) - 15 )) ${spec#*|} \
      > "$LOGS/imdb-${spec%%|*}.log" 2>&1 &
  done
  wait
}

SHORT_LSTMS=(
  "xlstm-lr3|--lr 3e-4"
  "xlstm-lr3-s2|--lr 3e-4 --seed 2"
  "xlstm-lr10|--lr 1e-3"
)
SKIMS=(
  "xskim-d20-g02|--d-small 20 --gamma 0.02"
  "xskim-d20-g015|--d-small 20 --gamma 0.015"
  "xskim-d10-g02|--d-small 10 --gamma 0.02"
  "xskim-d20-g02-s2|--d-small 20 --gamma 0.02 --seed 2"
)
short_ds() {  # SST-2 / MR: transfer LSTMs, pick on dev, Skim-LSTM variants from the pick
  local ds=$1 spec
  for spec in "${SHORT_LSTMS[@]}"; do
    py --dataset $ds --family lstm --name "$ds-${spec%%|*}" --init-from models/imdb-lstm --tune-embeddings $C \
      --dropout 0.5 --eval-every 100 --patience 1500 --time-budget $LSTM_S ${spec#*|} > "$LOGS/$ds-${spec%%|*}.log" 2>&1 &
  done
  wait
  local base
  base=$(python3 -m training.pick --prefer-hidden 100 "$RUNS"/$ds-xlstm-* models/$ds-lstm 2> "$LOGS/$ds-pick.txt")
  echo "$base" >> "$LOGS/$ds-pick.txt"; cat "$LOGS/$ds-pick.txt"
  for spec in "${SKIMS[@]}"; do
    py --dataset $ds --family skim --name "$ds-${spec%%|*}" --init-from "$base" $C --eval-every 100 --lr 5e-4 \
      --min-skim 0.5 --patience 4000 --time-budget $(( $(left) - 20 )) ${spec#*|} > "$LOGS/$ds-${spec%%|*}.log" 2>&1 &
  done
  wait
}

imdb_chain 100 "lmlstm-lr10|--lr 1e-3 --dropout 0.5" "lmlstm-lr5|--lr 5e-4 --dropout 0.5" &
imdb_chain 200 "lmlstm-d200|--lr 5e-4 --dropout 0.5" &
py --dataset imdb --family lstm --name imdb-lstm-scratch --tune-embeddings $C --eval-every 200 --batch-size 64 \
  --max-len 400 --dropout 0.5 --patience 3000 --time-budget $(( TOTAL - 15 )) > "$LOGS/imdb-lstm-scratch.log" 2>&1 &
short_ds sst2 &
short_ds mr &
wait
echo "== done at ${SECONDS}s"
for f in "$RUNS"/*/manifest.json; do
  python3 -c "import json,sys; m=json.load(open(sys.argv[1])); t=m['training']; print(f\"{m['name']:28s} d={m['sizes']['hidden']} dev={t['dev_accuracy'] or 0:.4f} ppl={t.get('dev_perplexity') or 0:.1f} skim={t['dev_skim_rate']:.3f} step={t['best_step']} s={t['seconds']}\")" "$f"
done | tee "$LOGS/summary.txt"
if [ -n "$PACK" ]; then
  keep=$(for ds in sst2 mr; do tail -1 "$LOGS/$ds-pick.txt" | xargs basename; done)
  python3 training/plans/pack.py "$PACK" "$RUNS" "$LOGS" $keep \
    $(cd "$RUNS" && ls -d sst2-xskim-* mr-xskim-* imdb-lmlstm-* imdb-lstm-scratch 2>/dev/null)
fi
