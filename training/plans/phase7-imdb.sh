#!/usr/bin/env bash
# Phase 7, IMDb (one H200 call, < 10 min): the published imdb-skim continued with distillation from the
# published imdb-lstm on IMDb training sentences. On SST-2 (phase7.sh) the distilled students kept their dev
# accuracy while their skim rate rose to 83-89%, where phase 6's reached 52-65%; imdb-skim skims 77%, at
# the edge of issue 4's speed bars. The transfer set is the one phase7.sh used (sentences of IMDb's training
# reviews, outside the dev block, so dev stays unseen); its labels here are imdb-lstm's probabilities.
# Carry: .carry/data (imdb train), .carry/bases7/{imdb-lstm,imdb-skim}, .carry/transfer/imdb-sentences.jsonl.gz.
# Usage: bash training/plans/phase7-imdb.sh RUNS LOGS [PACK_DEST]
source training/plans/common.sh "$@"
B=${B:-.carry/bases7}
TEXTS=${TEXTS:-.carry/transfer/imdb-sentences.jsonl.gz}
LABELS=$RUNS/imdb-teacher.jsonl.gz
timeout -k 20 "$(left)" python3 -m training.teacher_labels --dataset imdb --data-dir .carry/data --texts "$TEXTS" \
  --out "$LABELS" "$B/imdb-lstm" 2>&1 | tee "$LOGS/imdb-teacher-labels.log"
R="--hard-gumbel --ema 0.999 --distill $LABELS"
STUDENTS=(
  "imdb-s7kd-w1|$R"
  "imdb-s7kd-w1-g04|$R --gamma 0.04"
  "imdb-s7kd-w05|$R --distill-weight 0.5"
  "imdb-s7kd-w1-b256|$R --distill-batch 256"
)
fan_out py "--dataset imdb --family skim --init-from $B/imdb-skim $C --eval-every 100 --batch-size 256 --gamma 0.03 \
  --max-len 256 --min-skim 0.75 --patience 4000 --time-budget $(( $(left) - 25 ))" "${STUDENTS[@]}"
summary_and_pack 3 "$RUNS/imdb-s7kd-*" imdb-skim
