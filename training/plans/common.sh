# Shared prelude of the GPU plans (source it; phase 5 on). Phase 3/4 plans are kept as they ran.
#   source training/plans/common.sh RUNS LOGS [PACK_DEST]
# Sets RUNS LOGS PACK END, C (data/vocab/out flags), and the helpers below. TOTAL (seconds) bounds the call;
# SMOKE=1 makes every run tiny, for a local check of the plumbing.
set -u
RUNS=${1:?RUNS}; LOGS=${2:?LOGS}; PACK=${3:-}; mkdir -p "$RUNS" "$LOGS"
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1 TORCHINDUCTOR_COMPILE_THREADS=1
# GloVe rows the vocabularies need (python -m training.glove_subset); the GPU machine has no GloVe package
[ -d .carry/glove ] && export SKIMSERVE_GLOVE_SUBSET=${SKIMSERVE_GLOVE_SUBSET:-.carry/glove}
TOTAL=${TOTAL:-540}
C="--data-dir .carry/data --vocab-cache .carry/vocab --out-dir $RUNS"
if [ "${SMOKE:-0}" = 1 ]; then C="$C --limit 200 --max-steps 20 --eval-every 10"; TOTAL=${TOTAL_SMOKE:-240}; fi
END=$((SECONDS + TOTAL))
# IMDb train travels xz-compressed (the call's 64 MiB limit); the loaders read .jsonl.gz
if [ ! -f .carry/data/imdb/train.jsonl.gz ] && [ -f .carry/pack/imdb_train.jsonl.xz ]; then
  mkdir -p .carry/data/imdb
  python3 -c "import gzip, lzma, shutil; shutil.copyfileobj(lzma.open('.carry/pack/imdb_train.jsonl.xz'), gzip.open('.carry/data/imdb/train.jsonl.gz', 'wb', 1))"
fi
nvidia-smi --query-gpu=name,memory.used,memory.total --format=csv 2>/dev/null | tee "$LOGS/gpu.txt"

left() { local l=$((END - SECONDS)); echo $(( l > 1 ? l : 1 )); }   # seconds left in the call
py() { timeout -k 20 "$(left)" python3 -m training.train "$@"; }
lm() { timeout -k 20 "$(left)" python3 -m training.pretrain_lm "$@"; }
name() { echo "${1%%|*}"; }      # "name|flags" specs
flags() { echo "${1#*|}"; }

fan_out() {  # fan_out RUNNER "COMMON FLAGS" SPEC...: RUNNER (py or lm) once per "name|flags" spec, all at once,
  # each with --name NAME, the common flags, then its own (a later flag wins), logged to $LOGS/NAME.log
  local run=$1 common=$2; shift 2
  for spec in "$@"; do
    $run --name "$(name "$spec")" $common $(flags "$spec") > "$LOGS/$(name "$spec").log" 2>&1 &
  done
  wait
}

summary_and_pack() {  # summary_and_pack N GLOB LABEL: the summary, then pack the dev-best N runs of GLOB
  # (training.pick: its ranking in $LOGS/LABEL-pick.txt, printed too)
  local n=$1 glob=$2 label=$3
  summary
  pack $(python3 -m training.pick --top "$n" $glob 2> "$LOGS/$label-pick.txt" | xargs -n1 basename)
  cat "$LOGS/$label-pick.txt"
}

summary() {  # one line per run: dev accuracy / perplexity / skim of its best checkpoint
  echo "== done at ${SECONDS}s"
  for f in "$RUNS"/*/manifest.json; do
    python3 -c "import json,sys; m=json.load(open(sys.argv[1])); t=m['training']; print(f\"{m['name']:28s} d={m['sizes']['hidden']} dev={t.get('dev_accuracy') or 0:.4f} ppl={t.get('dev_perplexity') or 0:.1f} skim={t.get('dev_skim_rate') or 0:.3f} step={t['best_step']} s={t['seconds']}\")" "$f"
  done | tee "$LOGS/summary.txt"
}

pack() {  # pack NAME...: every manifest and log, plus the named run folders whole (training/plans/pack.py)
  [ -n "$PACK" ] && python3 training/plans/pack.py "$PACK" "$RUNS" "$LOGS" "$@"
}
