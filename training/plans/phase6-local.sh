#!/usr/bin/env bash
# Phase 6, SST-2 Skim-LSTM variants on the 2-core development CPU, two at a time (one core each), from the
# SST-2 LSTM the published sst2-skim was trained from (sst2-l5t-lr5, phase5-local.sh). What is new against
# phase 5: weight averaging (--ema), which smooths the dev curve that swings by about a point between
# evaluations, longer runs (phase 5's best checkpoint was at its last evaluations) and more seeds.
# Usage: bash training/plans/phase6-local.sh BASE RUNS LOGS
set -u
BASE=${1:?BASE}; RUNS=${2:?RUNS}; LOGS=${3:?LOGS}; mkdir -p "$RUNS" "$LOGS"
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
skim() {  # skim NAME FLAGS...
  local n=$1; shift
  python3 -m training.train --device cpu --out-dir "$RUNS" --dataset sst2 --family skim --name "$n" \
    --init-from "$BASE" --eval-every 100 --lr 5e-4 --min-skim 0.5 --patience 4000 --time-budget 600 \
    "$@" > "$LOGS/$n.log" 2>&1
}
pair() { skim "$1" ${2} & skim "$3" ${4} & wait; }   # pair NAME1 "FLAGS1" NAME2 "FLAGS2"
pair sst2-s6skim-d10-g04-e999 "--d-small 10 --gamma 0.04 --ema 0.999" \
     sst2-s6skim-d10-g04-e999-s2 "--d-small 10 --gamma 0.04 --ema 0.999 --seed 2"
pair sst2-s6skim-d10-g04-s2 "--d-small 10 --gamma 0.04 --seed 2" \
     sst2-s6skim-d10-g04-s3 "--d-small 10 --gamma 0.04 --seed 3"
pair sst2-s6skim-d10-g05-e999 "--d-small 10 --gamma 0.05 --ema 0.999" \
     sst2-s6skim-d15-g04-e999 "--d-small 15 --gamma 0.04 --ema 0.999"
pair sst2-s6skim-d10-g04-e998-lr3 "--d-small 10 --gamma 0.04 --ema 0.998 --lr 3e-4" \
     sst2-s6skim-d10-g04-e999-s3 "--d-small 10 --gamma 0.04 --ema 0.999 --seed 3"
python3 -m training.pick --top 3 "$RUNS"/sst2-s6skim-* 2>&1 >/dev/null | tee "$LOGS/summary.txt"
