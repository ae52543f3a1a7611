#!/usr/bin/env bash
# Phase 8, call 3 (one H200 call, < 8 min): the Skim-LSTM students again, now from call 2's dev-best distilled
# LSTM (sst2-l8kd-w2-imdb, dev 0.8784) instead of the published sst2-lstm (0.8578): call 2's skims, started
# from the weaker LSTM, stopped at 0.852-0.866. Same labels (.carry/labels8), same recipe otherwise.
# Carry: .carry/data, .carry/bases8b/sst2-l8kd-w2-imdb (from call 2), .carry/labels8/sst2-minilm.jsonl.gz.
# Usage: bash training/plans/phase8b.sh RUNS LOGS [PACK_DEST]    (SMOKE=1: tiny runs, to check the plumbing)
source training/plans/common.sh "$@"
BASE=${BASE:-.carry/bases8b/sst2-l8kd-w2-imdb}
LABELS=${LABELS:-.carry/labels8/sst2-minilm.jsonl.gz}
budget=$(( $(left) - 30 ))
R="--d-small 20 --gamma 0.04 --hard-gumbel --ema 0.999 --ema-warmup --lr 1e-3"
STUDENTS=(
  "sst2-s8b-w1|$R"
  "sst2-s8b-w2|$R --distill-weight 2"
  "sst2-s8b-w1-lr5|${R/--lr 1e-3/--lr 5e-4}"
  "sst2-s8b-w1-g02|${R/--gamma 0.04/--gamma 0.02}"
  "sst2-s8b-w2-g02|${R/--gamma 0.04/--gamma 0.02} --distill-weight 2"
  "sst2-s8b-w1-s2|$R --seed 2"
)
fan_out py "--dataset sst2 --family skim --init-from $BASE $C --eval-every 100 --min-skim 0.5 \
  --patience 4000 --time-budget $budget --distill $LABELS" "${STUDENTS[@]}"
summary_and_pack 3 "$RUNS/sst2-s8b-*" skim
