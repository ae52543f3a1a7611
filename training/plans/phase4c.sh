#!/usr/bin/env bash
# Phase 4, GPU call 3 (one H100, < 10 min, jobs in parallel): more Skim-LSTM variants for SST-2 and MR from
# call 2's dev-best LSTMs (fine-tuned from the LM-pretrained IMDb LSTM; carried in .carry/bases). Call 2
# showed gamma 0.02 skims only 13-28% of tokens from these bases, 0.03 about 50%: this call tries larger
# gamma, other small sizes and seeds. Selection is on dev only.
# Usage: bash training/plans/phase4c.sh RUNS LOGS [PACK_DEST]
set -u
RUNS=${1:-runs4c}; LOGS=${2:-logs4c}; PACK=${3:-}; mkdir -p "$RUNS" "$LOGS"
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1 TORCHINDUCTOR_COMPILE_THREADS=1
TOTAL=${TOTAL:-530}
C="--data-dir .carry/data --out-dir $RUNS --eval-every 100 --min-skim 0.5 --patience 4000"
if [ "${SMOKE:-0}" = 1 ]; then C="$C --limit 200 --max-steps 20 --eval-every 10"; TOTAL=${TOTAL_SMOKE:-120}; fi
py() { timeout -k 20 "$TOTAL" python3 -m training.train "$@"; }
nvidia-smi --query-gpu=name,memory.used,memory.total --format=csv 2>/dev/null | tee "$LOGS/gpu.txt"
declare -A BASE=([sst2]=.carry/bases/sst2-ylstm-lr3 [mr]=.carry/bases/mr-ylstm-lr10)
VARIANTS=(
  "sst2|zskim-d20-g03-s2|--d-small 20 --gamma 0.03 --seed 2"
  "sst2|zskim-d20-g03-s3|--d-small 20 --gamma 0.03 --seed 3"
  "sst2|zskim-d20-g04|--d-small 20 --gamma 0.04"
  "sst2|zskim-d20-g05|--d-small 20 --gamma 0.05"
  "sst2|zskim-d10-g04|--d-small 10 --gamma 0.04"
  "sst2|zskim-d5-g04|--d-small 5 --gamma 0.04"
  "sst2|zskim-d20-g04-lr10|--d-small 20 --gamma 0.04 --lr 1e-3"
  "sst2|zskim-d20-g04-p5|--d-small 20 --gamma 0.04 --dropout 0.5"
  "sst2|zskim-d20-g04-s2|--d-small 20 --gamma 0.04 --seed 2"
  "mr|zskim-d20-g03-s2|--d-small 20 --gamma 0.03 --seed 2"
  "mr|zskim-d20-g04|--d-small 20 --gamma 0.04"
  "mr|zskim-d20-g05|--d-small 20 --gamma 0.05"
  "mr|zskim-d10-g04|--d-small 10 --gamma 0.04"
  "mr|zskim-d5-g04|--d-small 5 --gamma 0.04"
  "mr|zskim-d20-g04-lr10|--d-small 20 --gamma 0.04 --lr 1e-3"
  "mr|zskim-d20-g04-s2|--d-small 20 --gamma 0.04 --seed 2"
)
for v in "${VARIANTS[@]}"; do
  IFS='|' read -r ds name flags <<< "$v"
  py --dataset "$ds" --family skim --name "$ds-$name" --init-from "${BASE[$ds]}" $C --lr 5e-4 \
    --time-budget $(( TOTAL - 15 )) $flags > "$LOGS/$ds-$name.log" 2>&1 &
done
wait
echo "== done at ${SECONDS}s"
for f in "$RUNS"/*/manifest.json; do
  python3 -c "import json,sys; m=json.load(open(sys.argv[1])); t=m['training']; print(f\"{m['name']:28s} d={m['sizes']['hidden']} ds={m['sizes']['small_hidden']} dev={t['dev_accuracy']:.4f} skim={t['dev_skim_rate']:.3f} step={t['best_step']} s={t['seconds']}\")" "$f"
done | tee "$LOGS/summary.txt"
[ -n "$PACK" ] && python3 training/plans/pack.py "$PACK" "$RUNS" "$LOGS" $(cd "$RUNS" && ls -d */ | tr -d /)
true
