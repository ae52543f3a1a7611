#!/usr/bin/env bash
# Phase 6, SST-2 Skim-LSTM variants on the 2-core development CPU, two at a time (one core each), in the
# project's venv with the train extra. Base: the SST-2 LSTM the published sst2-skim came from (sst2-l5t-lr5,
# phase5-local.sh), or that sst2-skim run itself, continued (CONT). New against phase 5, as on IMDb in
# phase6.sh: weight averaging (--ema, with warmup on fresh runs) and straight-through Gumbel-softmax
# (--hard-gumbel); the IMDb run that continued a skim run with both was the best on dev.
# STAGE=b (after stage a): the published recipe (d'=20, gamma 0.04, straight-through, EMA with warmup) from
# BASE = the shipped sst2-lstm (phase 4; a different SST-2 LSTM), and from stage a's base with seed 2.
# Usage: [STAGE=a|b] bash training/plans/phase6-local.sh BASE CONT RUNS LOGS   (stage b: CONT = stage a's BASE)
set -u
BASE=${1:?BASE}; CONT=${2:?CONT}; RUNS=${3:?RUNS}; LOGS=${4:?LOGS}; mkdir -p "$RUNS" "$LOGS"
python3 -c "import torch" || { echo "needs the train extra (torch): run in the project's venv" >&2; exit 1; }
source training/plans/local.sh
skim() { local n=$1; shift; cpu_skim sst2 "$n" "$BASE" 600 "$@"; }   # skim NAME FLAGS...
pair() { skim "$1" ${2} & skim "$3" ${4} & wait; }   # pair NAME1 "FLAGS1" NAME2 "FLAGS2"
if [ "${STAGE:-a}" = a ]; then
  pair sst2-s6skim-cont-st-e999 "--init-from $CONT --gamma 0.04 --hard-gumbel --ema 0.999" \
       sst2-s6skim-d10-g04-st-e999w "--d-small 10 --gamma 0.04 --hard-gumbel --ema 0.999 --ema-warmup"
  pair sst2-s6skim-cont-st-e999-s2 "--init-from $CONT --gamma 0.04 --hard-gumbel --ema 0.999 --seed 2" \
       sst2-s6skim-d10-g04-e999w "--d-small 10 --gamma 0.04 --ema 0.999 --ema-warmup"
  pair sst2-s6skim-d10-g04-st "--d-small 10 --gamma 0.04 --hard-gumbel" \
       sst2-s6skim-d10-g04-st-e999w-s2 "--d-small 10 --gamma 0.04 --hard-gumbel --ema 0.999 --ema-warmup --seed 2"
  pair sst2-s6skim-d10-g05-st-e999w "--d-small 10 --gamma 0.05 --hard-gumbel --ema 0.999 --ema-warmup" \
       sst2-s6skim-d20-g04-st-e999w "--d-small 20 --gamma 0.04 --hard-gumbel --ema 0.999 --ema-warmup"
else
  R="--d-small 20 --gamma 0.04 --hard-gumbel --ema 0.999 --ema-warmup"
  pair sst2-s6skim-b-d20-g04-st-e999w "$R" sst2-s6skim-d20-g04-st-e999w-s2 "--init-from $CONT $R --seed 2"
fi
python3 -m training.pick --top 3 "$RUNS"/sst2-s6skim-* 2>&1 >/dev/null | tee "$LOGS/summary.txt"
