#!/usr/bin/env bash
# Phase 8, call 2 (one H200 call, < 10 min): SST-2 students distilled from the MiniLM teachers of call 1
# (phase8-teachers.sh; their mean labels the 250,000 IMDb sentences, ensemble dev 0.8922 against 0.85-0.86
# for every SST-2 LSTM so far). Phase 7's student recipe otherwise: Skim-LSTMs from the published sst2-lstm
# (d=100, d'=20, straight-through Gumbel-softmax, EMA 0.999), and distilled LSTMs from it and from imdb-lstm.
# Carry: .carry/data (sst2 train/dev), .carry/glove (python -m training.glove_subset --out .carry/glove
# --for-extending models/imdb-lstm sst2), .carry/bases8/{sst2-lstm,imdb-lstm} (the published ones),
# .carry/labels8/sst2-minilm.jsonl.gz (call 1's output).
# Usage: bash training/plans/phase8.sh RUNS LOGS [PACK_DEST]    (SMOKE=1: tiny runs, to check the plumbing)
source training/plans/common.sh "$@"
BASE=${BASE:-.carry/bases8/sst2-lstm}
IMDB=${IMDB:-.carry/bases8/imdb-lstm}
LABELS=${LABELS:-.carry/labels8/sst2-minilm.jsonl.gz}
budget=$(( $(left) - 30 ))

R="--d-small 20 --gamma 0.04 --hard-gumbel --ema 0.999 --ema-warmup --lr 1e-3"
STUDENTS=(
  "sst2-s8kd-w1|$R"
  "sst2-s8kd-w2|$R --distill-weight 2"
  "sst2-s8kd-w4|$R --distill-weight 4"
  "sst2-s8kd-w2-s2|$R --distill-weight 2 --seed 2"
  "sst2-s8kd-w2-g02|${R/--gamma 0.04/--gamma 0.02} --distill-weight 2"
  "sst2-s8kd-w2-lr5|${R/--lr 1e-3/--lr 5e-4} --distill-weight 2"
)
fan_out py "--dataset sst2 --family skim --init-from $BASE $C --eval-every 100 --min-skim 0.5 \
  --patience 4000 --time-budget $budget --distill $LABELS" "${STUDENTS[@]}" &
fan_out py "--dataset sst2 --family lstm $C --tune-embeddings --dropout 0.5 --eval-every 100 --patience 3000 \
  --lr 5e-4 --ema 0.999 --ema-warmup --time-budget $budget --distill $LABELS" \
  "sst2-l8kd-w1|--init-from $BASE" "sst2-l8kd-w2|--init-from $BASE --distill-weight 2" \
  "sst2-l8kd-w2-imdb|--init-from $IMDB --distill-weight 2" &
wait
summary
pack $(python3 -m training.pick --top 3 "$RUNS"/sst2-s8kd-* 2> "$LOGS/skim-pick.txt" | xargs -n1 basename) \
  $(python3 -m training.pick --top 2 "$RUNS"/sst2-l8kd-* 2> "$LOGS/lstm-pick.txt" | xargs -n1 basename)
cat "$LOGS/skim-pick.txt" "$LOGS/lstm-pick.txt"
