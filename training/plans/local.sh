# Shared prelude of the development-CPU plans (source it after setting RUNS and LOGS; phase 5 on):
# one thread per run, and cpu_skim, the SST-2/MR Skim-LSTM run these plans share.
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
cpu_skim() {  # cpu_skim DS NAME BASE BUDGET_S FLAGS...: log in $LOGS/NAME.log, artifact in $RUNS/NAME
  local ds=$1 n=$2 b=$3 budget=$4; shift 4
  python3 -m training.train --device cpu --out-dir "$RUNS" --dataset "$ds" --family skim --name "$n" \
    --init-from "$b" --eval-every 100 --lr 5e-4 --min-skim 0.5 --patience 4000 --time-budget "$budget" \
    "$@" > "$LOGS/$n.log" 2>&1
}
