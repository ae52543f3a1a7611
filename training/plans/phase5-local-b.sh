#!/usr/bin/env bash
# Phase 5, more SST-2 Skim-LSTM variants on the development CPU, one at a time (one core; the other
# served the test suite): from the same SST-2 LSTM as phase5-local.sh's skims (sst2-l5t-lr5).
# Usage: bash training/plans/phase5-local-b.sh RUNS LOGS
set -u
RUNS=${1:?RUNS}; LOGS=${2:?LOGS}; mkdir -p "$RUNS" "$LOGS"
source training/plans/local.sh
skim() { local n=$1; shift; cpu_skim sst2 "$n" "$RUNS/sst2-l5t-lr5" 455 "$@"; }   # skim NAME FLAGS...
skim sst2-s5skim-d10-g04 --d-small 10 --gamma 0.04
skim sst2-s5skim-d20-g04-s2 --d-small 20 --gamma 0.04 --seed 2
skim sst2-s5skim-d20-g03 --d-small 20 --gamma 0.03
for f in "$RUNS"/sst2-s5skim-*/manifest.json; do
  python3 -c "import json,sys; m=json.load(open(sys.argv[1])); t=m['training']; print(f\"{m['name']:24s} dev={t['dev_accuracy']:.4f} skim={t.get('dev_skim_rate') or 0:.3f} step={t['best_step']} s={t['seconds']}\")" "$f"
done | tee "$LOGS/summary-b.txt"
