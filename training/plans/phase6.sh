#!/usr/bin/env bash
# Phase 6 (one H200, calls of < 10 min): IMDb Skim-LSTMs from the published imdb-lstm (phase 5), carried in
# .carry/bases6/imdb-lstm. Phase 5's IMDb skims plateaued near 0.880 dev with the dev curve swinging by about
# a point between evaluations; this phase tries the two changes that target that:
#   weight averaging (--ema): evaluates and keeps a moving average of the weights, not the last step's;
#   straight-through Gumbel-softmax (--hard-gumbel): training's forward pass takes the sampled hard decision,
#     so training sees whole read-or-skim states, as serving does (the soft mixture lets a half-read token
#     pass information that serving's hard decision drops).
# Fewer jobs share the GPU than in phase 5 (4, not 5), so each makes more steps. Selection is on dev only.
# STAGE=b runs the specs in SKIMS_B (after stage a's results), e.g. continuing a stage-a run:
#   SKIMS_B="imdb-s6skim-e999-more|--init-from,.carry/bases6/imdb-s6skim-g03-e999,--ema,0.999 ..."
# Usage: STAGE=a bash training/plans/phase6.sh RUNS LOGS [PACK_DEST]
source training/plans/common.sh "$@"
STAGE=${STAGE:?STAGE=a|b}
BASE=${BASE:-.carry/bases6/imdb-lstm}
if [ "$STAGE" = a ]; then
  SKIMS=(
    "imdb-s6skim-g03-e999|--lr 1e-3 --ema 0.999"
    "imdb-s6skim-g03-e999-lr5|--lr 5e-4 --ema 0.999"
    "imdb-s6skim-g03-st|--lr 1e-3 --hard-gumbel"
    "imdb-s6skim-g03-st-e999-lr5|--lr 5e-4 --hard-gumbel --ema 0.999"
  )
else
  SKIMS=(${SKIMS_B:?SKIMS_B: space-separated name|flags specs, flags joined by commas})
  SKIMS=("${SKIMS[@]//,/ }")
fi
fan_out py "--dataset imdb --family skim --init-from $BASE $C --eval-every 100 --d-small 10 --batch-size 256 \
  --gamma 0.03 --max-len 256 --min-skim 0.75 --patience 4000 --time-budget $(( $(left) - 25 ))" "${SKIMS[@]}"
summary_and_pack 3 "$RUNS/imdb-s6skim-*" imdb-skim
