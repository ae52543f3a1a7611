#!/usr/bin/env bash
# Phase 5 (one H200; two calls back to back, each < 10 min, jobs in parallel): a longer-trained IMDb language
# model with larger batches (phase 4's LM saw 3 epochs in 210 s and its dev perplexity was still falling at 166),
# the IMDb classifiers from it, then IMDb Skim-LSTMs. SST-2/MR transfers from the new IMDb LSTM run on the
# development CPU (they are small: phase 4's CPU reruns matched the GPU's steps per second).
#   STAGE=lmcls  IMDb LM variants (d=100) for LM_S seconds, then IMDb classifiers fine-tuned from the LM with
#                the lowest dev perplexity (and one from the runner-up, so the pick by perplexity is checked).
#   STAGE=skim   IMDb Skim-LSTM variants from the dev-best IMDb classifier, for the whole call.
# The skim stage reads the classifiers from RUNS (kept on a warm machine between calls) or, on a fresh
# machine, from .carry/bases5 (the folders the previous call returned). Selection is on dev splits only.
# Usage: STAGE=lmcls bash training/plans/phase5.sh RUNS LOGS [PACK_DEST]
source training/plans/common.sh "$@"
STAGE=${STAGE:?STAGE=lmcls|skim}
runs_of() { ls -d "$RUNS"/$1 .carry/bases5/$1 2>/dev/null; }   # a glob over this call's and carried runs

if [ "$STAGE" = lmcls ]; then
  LM_S=${LM_S:-330}
  LMS=(
    "imdb-lm5-a|--batch-size 64 --lr 2e-3 --dropout 0.1"
    "imdb-lm5-b|--batch-size 128 --lr 3e-3 --dropout 0.15"
    "imdb-lm5-c|--batch-size 128 --lr 3e-3 --dropout 0.3"
    "imdb-lm5-d|--batch-size 256 --lr 4e-3 --dropout 0.25"
  )
  fan_out lm "--dataset imdb --d 100 $C --eval-every 250 --patience 100000 --time-budget $LM_S" "${LMS[@]}"
  ranked=$(python3 -m training.pick --by perplexity --top 2 $(runs_of "imdb-lm5-*") 2> "$LOGS/lm-pick.txt"); cat "$LOGS/lm-pick.txt"
  best=$(echo "$ranked" | sed -n 1p); second=$(echo "$ranked" | sed -n 2p)
  cls() {  # cls NAME LM FLAGS...
    local n=$1 base=$2; shift 2
    py --dataset imdb --family lstm --name "$n" --init-from "$base" --tune-embeddings $C --eval-every 200 \
      --batch-size 64 --max-len 400 --dropout 0.5 --patience 3000 --time-budget $(( $(left) - 25 )) "$@" \
      > "$LOGS/$n.log" 2>&1 &
  }
  cls imdb-l5lstm-lr5 "$best" --lr 5e-4
  cls imdb-l5lstm-lr5-s2 "$best" --lr 5e-4 --seed 2
  cls imdb-l5lstm-lr7 "$best" --lr 7e-4
  cls imdb-l5lstm-lr5-2nd "$second" --lr 5e-4
  wait
  summary
  pack $(basename "$best") $(python3 -m training.pick --top 2 "$RUNS"/imdb-l5lstm-* 2> "$LOGS/cls-pick.txt" | xargs -n1 basename)
  cat "$LOGS/cls-pick.txt"

elif [ "$STAGE" = skim ]; then
  base=$(python3 -m training.pick $(runs_of "imdb-l5lstm-*") 2> "$LOGS/imdb-pick.txt"); cat "$LOGS/imdb-pick.txt"
  IMDB_SKIMS=(
    "imdb-s5skim-g03|--gamma 0.03"
    "imdb-s5skim-g03-s2|--gamma 0.03 --seed 2"
    "imdb-s5skim-g02|--gamma 0.02"
    "imdb-s5skim-g04|--gamma 0.04"
    "imdb-s5skim-g03-l400|--gamma 0.03 --max-len 400 --batch-size 128"
  )
  fan_out py "--dataset imdb --family skim --init-from $base $C --eval-every 100 --d-small 10 --batch-size 256 \
    --lr 1e-3 --max-len 256 --min-skim 0.75 --patience 4000 --time-budget $(( $(left) - 25 ))" "${IMDB_SKIMS[@]}"
  summary_and_pack 3 "$RUNS/imdb-s5skim-*" imdb-skim
fi
