#!/usr/bin/env bash
# Phase 5, SST-2 and MR on the development CPU (2 cores, two runs at a time): LSTMs fine-tuned from the
# phase-5 IMDb LSTM (vocabulary extended with each split's words), the dev-best of them per dataset, then
# Skim-LSTM variants from it. Recipes as phase 4's dev-best (training/results/phase4-logs).
# Usage: bash training/plans/phase5-local.sh IMDB_LSTM RUNS LOGS
set -u
BASE=${1:?IMDB_LSTM}; RUNS=${2:?RUNS}; LOGS=${3:?LOGS}; mkdir -p "$RUNS" "$LOGS"
source training/plans/local.sh
py() { python3 -m training.train --device cpu --out-dir "$RUNS" "$@"; }
lstm() {  # lstm DS NAME FLAGS...
  local ds=$1 n=$2; shift 2
  py --dataset "$ds" --family lstm --name "$n" --init-from "$BASE" --tune-embeddings --dropout 0.5 --eval-every 100 \
    --patience 1500 --time-budget 200 "$@" > "$LOGS/$n.log" 2>&1
}
skim() { local ds=$1 n=$2 b=$3; shift 3; cpu_skim "$ds" "$n" "$b" 455 "$@"; }   # skim DS NAME BASE FLAGS...
lstm sst2 sst2-l5t-lr3 --lr 3e-4 & lstm mr mr-l5t-lr10 --lr 1e-3 & wait
lstm sst2 sst2-l5t-lr5 --lr 5e-4 & lstm mr mr-l5t-lr5 --lr 5e-4 & wait
for ds in sst2 mr; do
  python3 -m training.pick --prefer-hidden 100 "$RUNS"/$ds-l5t-* > "$LOGS/$ds-pick" 2> "$LOGS/$ds-pick.txt"; cat "$LOGS/$ds-pick.txt"
done
S=$(cat "$LOGS/sst2-pick"); M=$(cat "$LOGS/mr-pick")
skim sst2 sst2-s5skim-d20-g05 "$S" --d-small 20 --gamma 0.05 & skim mr mr-s5skim-d20-g04 "$M" --d-small 20 --gamma 0.04 & wait
skim sst2 sst2-s5skim-d20-g04 "$S" --d-small 20 --gamma 0.04 & skim mr mr-s5skim-d20-g05 "$M" --d-small 20 --gamma 0.05 & wait
for f in "$RUNS"/*/manifest.json; do
  python3 -c "import json,sys; m=json.load(open(sys.argv[1])); t=m['training']; print(f\"{m['name']:24s} dev={t['dev_accuracy']:.4f} skim={t.get('dev_skim_rate') or 0:.3f} step={t['best_step']} s={t['seconds']}\")" "$f"
done | tee "$LOGS/summary.txt"
