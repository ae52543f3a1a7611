#!/usr/bin/env bash
# Train the AntMan family of one dataset (docs/antman-training.md), on a GPU machine:
#   1. the dense d=400 teacher <ds>-lstm-d400 over the frozen embedding of models/<ds>-lstm (its `base`);
#   2. the coefficient rule: the 10x student trained with each loss of eq. 1 alone (three probes, in parallel);
#   3. the students, in parallel, distilled with the coefficients the probes gave:
#      <ds>-antman-2x / -5x / -10x (LGP-Shuffle g = 2, 5, 10 on both products) and <ds>-antman-skim
#      (the big cell LGP-Shuffle g=5, small cell and decision layer as the Skim-LSTM).
#
#   scripts/train_antman.sh DATASET OUT_DIR [DATA_DIR | IDS_FILE.xz]
# An .xz third argument is a training/encoded_splits.py file (token ids; what a GPU run carries); without a
# test split in it, set NO_TEST=1 (no results/*.json; test accuracy comes from training/evaluate.py).
# OUT_DIR receives the artifacts (the base model is linked in beside them, as artifacts find their base),
# probes/*.json (the converged single-loss values), results/*.json (torch test accuracy after dev selection)
# and logs/. Time budgets (seconds per run, data loading included): TEACHER_S, PROBE_S, STUDENT_S.
# EXTRA is appended to every run (the CPU smoke test passes --limit / --max-steps / --device cpu).
set -euo pipefail
ds=$1
out=$2
data=${3:-../shared/data}
if [[ $data == *.xz ]]; then src="--encoded $data"; else src="--data-dir $data"; fi
PY=${PYTHON:-python}
EXTRA=${EXTRA:-}
mkdir -p "$out/probes" "$out/results" "$out/logs"
ln -sfn "$(realpath "models/$ds-lstm")" "$out/$ds-lstm"

case $ds in
  sst2)
    common="--batch-size 64 --eval-every 200 --patience 3000 --ema 0.999"
    teacher_args="--dropout 0.5"
    skim="--d-small 20 --gamma 0.04 --min-skim 0.5 --read-warmup 1500 --hard-gumbel"
    : "${TEACHER_S:=80}" "${PROBE_S:=70}" "${STUDENT_S:=220}" ;;
  imdb)
    common="--batch-size 128 --max-len 64 --eval-every 100 --patience 1500 --ema 0.998"
    teacher_args="--dropout 0.5"
    skim="--d-small 10 --gamma 0.03 --min-skim 0.5 --read-warmup 600 --hard-gumbel"
    : "${TEACHER_S:=90}" "${PROBE_S:=70}" "${STUDENT_S:=220}" ;;
  *) echo "unknown dataset $ds" >&2; exit 2 ;;
esac

run() {  # run NAME_FOR_LOG ARGS...: one training run, its output in logs/NAME.log
  local log=$out/logs/$1.log
  shift
  # shellcheck disable=SC2086
  $PY -m training.train_antman --dataset "$ds" --base "models/$ds-lstm" $src --d 400 \
      $common "$@" $EXTRA >"$log" 2>&1 || { echo "FAILED: $log" >&2; tail -5 "$log" >&2; return 1; }
  tail -1 "$log"
}

teacher=$out/$ds-lstm-d400
results() { [[ -n ${NO_TEST:-} ]] || echo "--results $out/results/$1.json"; }
# shellcheck disable=SC2046
run teacher --cell lstm --name "$ds-lstm-d400" --out-dir "$out" $teacher_args --time-budget "$TEACHER_S" \
    $(results "$ds-lstm-d400")

g10="--W-ih lgp-shuffle:10 --W-hh lgp-shuffle:10"
pids=()
for loss in target mse kl; do
  # shellcheck disable=SC2086
  run "probe-$loss" --cell antman-lstm $g10 --teacher "$teacher" --loss "$loss" \
      --probe-out "$out/probes/$ds-$loss.json" --time-budget "$PROBE_S" & pids+=($!)
done
for p in "${pids[@]}"; do wait "$p"; done

probes=("$out/probes/$ds-target.json" "$out/probes/$ds-mse.json" "$out/probes/$ds-kl.json")
student() {  # student NAME ARGS...
  local name=$1
  shift
  run "$name" --teacher "$teacher" --probes "${probes[@]}" --name "$name" --out-dir "$out" \
      --time-budget "$STUDENT_S" $(results "$name") "$@"
}
pids=()
for g in 2 5 10; do
  student "$ds-antman-${g}x" --cell antman-lstm --W-ih "lgp-shuffle:$g" --W-hh "lgp-shuffle:$g" & pids+=($!)
done
# shellcheck disable=SC2086
student "$ds-antman-skim" --cell antman-skim-lstm --W-ih lgp-shuffle:5 --W-hh lgp-shuffle:5 $skim & pids+=($!)
status=0
for p in "${pids[@]}"; do wait "$p" || status=1; done
exit $status
