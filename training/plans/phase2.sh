#!/usr/bin/env bash
# Phase 2 (one GPU call, < 10 min): LSTM baselines with fine-tuned GloVe (best on dev in phase 1),
# then Skim-LSTM variants initialised from them; selection among variants is by dev accuracy only.
# Usage: bash training/plans/phase2.sh OUT_DIR LOG_DIR
set -u
OUT=${1:-models-gpu}; LOGS=${2:-logs-gpu}; mkdir -p "$OUT" "$LOGS"
C="--data-dir .carry/data --vocab-cache .carry/vocab --out-dir $OUT --eval-every 100"
export PYTHONUNBUFFERED=1
py() { python3 -m training.train "$@"; }
lstm_then_skims() {  # dataset, lstm args, then skim variant specs "name|args"
  local ds=$1 largs=$2; shift 2
  py --dataset $ds --family lstm --name $ds-lstm --tune-embeddings $C $largs > $LOGS/$ds-lstm.log 2>&1
  for spec in "$@"; do
    py --dataset $ds --family skim --name "${spec%%|*}" --init-from $OUT/$ds-lstm $C ${spec#*|} > "$LOGS/${spec%%|*}.log" 2>&1 &
  done
  wait
}
lstm_then_skims sst2 "--patience 2000 --time-budget 150" \
  "sst2-skim-g02|--d-small 10 --gamma 0.02 --lr 5e-4 --min-skim 0.5 --patience 3000 --time-budget 330" \
  "sst2-skim-g01|--d-small 10 --gamma 0.01 --lr 5e-4 --min-skim 0.5 --patience 3000 --time-budget 330" \
  "sst2-skim-d20|--d-small 20 --gamma 0.02 --lr 5e-4 --min-skim 0.5 --patience 3000 --time-budget 330" &
lstm_then_skims mr "--patience 2000 --time-budget 150" \
  "mr-skim-g02|--d-small 10 --gamma 0.02 --lr 5e-4 --min-skim 0.5 --patience 3000 --time-budget 330" \
  "mr-skim-g01|--d-small 10 --gamma 0.01 --lr 5e-4 --min-skim 0.5 --patience 3000 --time-budget 330" \
  "mr-skim-d20|--d-small 20 --gamma 0.02 --lr 5e-4 --min-skim 0.5 --patience 3000 --time-budget 330" &
lstm_then_skims imdb "--batch-size 64 --max-len 400 --patience 2000 --time-budget 190" \
  "imdb-skim-g02|--d-small 10 --gamma 0.02 --lr 5e-4 --min-skim 0.75 --batch-size 64 --max-len 256 --patience 2000 --time-budget 300" \
  "imdb-skim-g05|--d-small 10 --gamma 0.05 --lr 5e-4 --min-skim 0.75 --batch-size 64 --max-len 256 --patience 2000 --time-budget 300" \
  "imdb-skim-d20|--d-small 20 --gamma 0.02 --lr 5e-4 --min-skim 0.75 --batch-size 64 --max-len 256 --patience 2000 --time-budget 300" &
wait
