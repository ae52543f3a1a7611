#!/usr/bin/env bash
# Phase 7 (one H200 call, < 10 min): SST-2 by distillation from a teacher ensemble on IMDb sentences.
# Phase 6 left SST-2 at 0.849-0.858 dev over ten skim variants trained on its 6,920 training sentences alone.
# Here the students also learn from soft labels on 250,000 unlabelled sentences of IMDb training reviews
# (another site's movie reviews; training/transfer_set.py), given by the mean of eight SST-2 LSTMs:
#   1. eight teacher LSTMs fine-tuned from the published imdb-lstm (phase 5's SST-2 LSTM recipe, seeds 1-8);
#   2. their mean probabilities on the transfer set (training/teacher_labels.py; dev scores logged);
#   3. Skim-LSTM students from the dev-best teacher with train.py --distill (phase 6's published SST-2 recipe
#      otherwise), and two distilled LSTMs.
# Carry: .carry/data (sst2 train/dev), .carry/glove (python -m training.glove_subset --for-extending
# models/imdb-lstm sst2), .carry/bases7/imdb-lstm, .carry/transfer/imdb-sentences.jsonl.gz.
# Usage: bash training/plans/phase7.sh RUNS LOGS [PACK_DEST]    (SMOKE=1: tiny runs, to check the plumbing)
source training/plans/common.sh "$@"
BASE=${BASE:-.carry/bases7/imdb-lstm}
TEXTS=${TEXTS:-.carry/transfer/imdb-sentences.jsonl.gz}
TEACHER_S=${TEACHER_S:-100}
LABELS=$RUNS/sst2-teachers.jsonl.gz

TEACHERS=(); for s in 1 2 3 4 5 6 7 8; do TEACHERS+=("sst2-t7-s$s|--seed $s"); done
fan_out py "--dataset sst2 --family lstm --init-from $BASE $C --tune-embeddings --dropout 0.5 --eval-every 100 \
  --patience 1500 --lr 5e-4 --time-budget $TEACHER_S" "${TEACHERS[@]}"
timeout -k 20 "$(left)" python3 -m training.teacher_labels --dataset sst2 --data-dir .carry/data --texts "$TEXTS" \
  --out "$LABELS" "$RUNS"/sst2-t7-s* 2>&1 | tee "$LOGS/teacher-labels.log"
TEACHER=$(python3 -m training.pick "$RUNS"/sst2-t7-s* 2> "$LOGS/teacher-pick.txt")
cat "$LOGS/teacher-pick.txt"

R="--d-small 20 --gamma 0.04 --hard-gumbel --ema 0.999 --ema-warmup"
STUDENTS=(
  "sst2-s7kd-w1|$R"
  "sst2-s7kd-w2|$R --distill-weight 2"
  "sst2-s7kd-w1-lr10|$R --lr 1e-3"
  "sst2-s7kd-w1-d10|${R/--d-small 20/--d-small 10}"
  "sst2-s7kd-w1-s2|$R --seed 2"
)
budget=$(( $(left) - 25 ))
fan_out py "--dataset sst2 --family skim --init-from $TEACHER $C --eval-every 100 --lr 5e-4 --min-skim 0.5 \
  --patience 4000 --time-budget $budget --distill $LABELS" "${STUDENTS[@]}" &
# distilled LSTMs: from the teacher, and from IMDb's
fan_out py "--dataset sst2 --family lstm $C --tune-embeddings --dropout 0.5 --eval-every 100 --patience 3000 \
  --lr 5e-4 --ema 0.999 --ema-warmup --time-budget $budget --distill $LABELS" \
  "sst2-l7kd-w1|--init-from $TEACHER" "sst2-l7kd-w1-imdb|--init-from $BASE" &
wait
summary
pack $(python3 -m training.pick --top 3 "$RUNS"/sst2-s7kd-* 2> "$LOGS/skim-pick.txt" | xargs -n1 basename) \
  $(python3 -m training.pick --top 2 "$RUNS"/sst2-l7kd-* "$RUNS"/sst2-t7-s* 2> "$LOGS/lstm-pick.txt" | xargs -n1 basename)
cat "$LOGS/skim-pick.txt" "$LOGS/lstm-pick.txt"
