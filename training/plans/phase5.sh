#!/usr/bin/env bash
# Phase 5 (one H100; three calls back to back, each < 10 min, jobs in parallel): a longer-pretrained IMDb
# language model, then the same chain as phase 4 from it. Phase 4's LM had 210 s and its dev perplexity
# was still falling (166); the LSTMs built on it gained 0.5-2.7 test points.
#   STAGE=lm    IMDb LM variants (d=100) for the whole call.
#   STAGE=cls   IMDb classifiers fine-tuned from the LM with the lowest dev perplexity (and one from each
#               other LM, so the pick by perplexity is checked against dev accuracy).
#   STAGE=skim  from the dev-best IMDb classifier: IMDb Skim-LSTM variants; SST-2 and MR LSTMs fine-tuned
#               from it (vocabulary extended), pick on dev, then Skim-LSTM variants from the pick.
# A stage reads the previous stage's runs from RUNS (kept on a warm machine between calls) or, on a fresh
# machine, from .carry/bases5 (the folders the previous call returned). Selection is on dev splits only.
# Usage: STAGE=lm bash training/plans/phase5.sh RUNS LOGS [PACK_DEST]
source training/plans/common.sh "$@"
STAGE=${STAGE:?STAGE=lm|cls|skim}
runs_of() { ls -d "$RUNS"/$1 .carry/bases5/$1 2>/dev/null; }   # a glob over this call's and carried runs

if [ "$STAGE" = lm ]; then
  LMS=(
    "imdb-lm5-a|--dropout 0.1"
    "imdb-lm5-b|--dropout 0.25"
    "imdb-lm5-c|--dropout 0.15 --batch-size 128 --lr 3e-3"
  )
  for spec in "${LMS[@]}"; do
    lm --dataset imdb --name "$(name "$spec")" --d 100 $C --eval-every 500 --patience 100000 \
      --time-budget $(( TOTAL - 30 )) $(flags "$spec") > "$LOGS/$(name "$spec").log" 2>&1 &
  done
  wait
  summary
  pack $(python3 -m training.pick --by perplexity $(runs_of "imdb-lm5-*") 2> "$LOGS/lm-pick.txt" | xargs -n1 basename)
  cat "$LOGS/lm-pick.txt"

elif [ "$STAGE" = cls ]; then
  best=$(python3 -m training.pick --by perplexity $(runs_of "imdb-lm5-*") 2> "$LOGS/lm-pick.txt"); cat "$LOGS/lm-pick.txt"
  cls() {  # cls NAME LM FLAGS...
    local n=$1 base=$2; shift 2
    py --dataset imdb --family lstm --name "$n" --init-from "$base" --tune-embeddings $C --eval-every 200 \
      --batch-size 64 --max-len 400 --dropout 0.5 --patience 3000 --time-budget $(( TOTAL - 20 )) "$@" \
      > "$LOGS/$n.log" 2>&1 &
  }
  cls imdb-l5lstm-lr5 "$best" --lr 5e-4
  cls imdb-l5lstm-lr5-s2 "$best" --lr 5e-4 --seed 2
  cls imdb-l5lstm-lr3 "$best" --lr 3e-4
  cls imdb-l5lstm-lr5-l512 "$best" --lr 5e-4 --max-len 512
  for other in $(runs_of "imdb-lm5-*"); do
    [ "$other" != "$best" ] && cls "imdb-l5lstm-lr5-$(basename "$other" | sed 's/imdb-lm5-//')" "$other" --lr 5e-4
  done
  wait
  summary
  pack $(python3 -m training.pick --top 2 "$RUNS"/imdb-l5lstm-* 2> "$LOGS/cls-pick.txt" | xargs -n1 basename)
  cat "$LOGS/cls-pick.txt"

elif [ "$STAGE" = skim ]; then
  base=$(python3 -m training.pick $(runs_of "imdb-l5lstm-*") 2> "$LOGS/imdb-pick.txt"); cat "$LOGS/imdb-pick.txt"
  IMDB_SKIMS=(
    "imdb-s5skim-g03|--gamma 0.03"
    "imdb-s5skim-g03-s2|--gamma 0.03 --seed 2"
    "imdb-s5skim-g02|--gamma 0.02"
    "imdb-s5skim-g04|--gamma 0.04"
  )
  for spec in "${IMDB_SKIMS[@]}"; do
    py --dataset imdb --family skim --name "$(name "$spec")" --init-from "$base" $C --eval-every 100 --d-small 10 \
      --batch-size 256 --lr 1e-3 --max-len 256 --min-skim 0.75 --patience 4000 --time-budget $(( TOTAL - 20 )) \
      $(flags "$spec") > "$LOGS/$(name "$spec").log" 2>&1 &
  done
  SHORT_LSTMS=("l5t-lr3|--lr 3e-4" "l5t-lr10|--lr 1e-3" "l5t-lr5|--lr 5e-4")
  SKIMS=(
    "s5skim-d20-g04|--d-small 20 --gamma 0.04"
    "s5skim-d20-g05|--d-small 20 --gamma 0.05"
    "s5skim-d10-g04|--d-small 10 --gamma 0.04"
    "s5skim-d20-g03|--d-small 20 --gamma 0.03"
  )
  short_ds() {  # SST-2 / MR: LSTMs fine-tuned from the IMDb LSTM, pick on dev, Skim-LSTMs from the pick
    local ds=$1 spec pick
    for spec in "${SHORT_LSTMS[@]}"; do
      SKIMSERVE_GLOVE_SUBSET=.carry/glove-ext py --dataset $ds --family lstm --name "$ds-$(name "$spec")" \
        --init-from "$base" --tune-embeddings $C --dropout 0.5 --eval-every 100 --patience 1500 \
        --time-budget ${LSTM_S:-130} $(flags "$spec") > "$LOGS/$ds-$(name "$spec").log" 2>&1 &
    done
    wait
    pick=$(python3 -m training.pick --prefer-hidden 100 "$RUNS"/$ds-l5t-* 2> "$LOGS/$ds-pick.txt"); cat "$LOGS/$ds-pick.txt"
    for spec in "${SKIMS[@]}"; do
      py --dataset $ds --family skim --name "$ds-$(name "$spec")" --init-from "$pick" $C --eval-every 100 --lr 5e-4 \
        --min-skim 0.5 --patience 4000 --time-budget $(( $(left) - 20 )) $(flags "$spec") \
        > "$LOGS/$ds-$(name "$spec").log" 2>&1 &
    done
    wait
  }
  short_ds sst2 &
  short_ds mr &
  wait
  summary
  keep=$(python3 -m training.pick --top 2 "$RUNS"/imdb-s5skim-* 2> "$LOGS/imdb-skim-pick.txt"
         for ds in sst2 mr; do
           python3 -m training.pick --prefer-hidden 100 "$RUNS"/$ds-l5t-* 2>/dev/null
           python3 -m training.pick "$RUNS"/$ds-s5skim-* 2> "$LOGS/$ds-skim-pick.txt"
         done)
  cat "$LOGS"/*-skim-pick.txt
  pack $(echo "$keep" | xargs -n1 basename)
fi
