#!/usr/bin/env bash
# CPU vs GPU on one GPU machine: the same Locust scenarios (loadtest/run_matrix.py) against the server
# on its CPU (SKIMSERVE_KERNEL=fast, falls back to the NumPy reference if the C kernel is not built) and on
# CUDA (SKIMSERVE_KERNEL=torch-cuda). Writes everything under ${OUT:-loadtest/results}/ and, if OUT is
# set, a single results.tgz there.
#   usage: loadtest/gpu_compare.sh [PREFIX] [RUN_TIME]     e.g. loadtest/gpu_compare.sh h100 20s
# QA=1 adds the /qa scenarios (skim-qa-u1, skim-qa-u8, dense-qa-u1, dense-qa-u8: squad-skim-lstm-att and
# squad-lstm-att on SQuAD test questions, which need squad/test.json in the data dir); QA=only runs just
# those. ONLY=name,name picks scenarios by name (run_matrix.py --only). MATRIX_TIMEOUT (s, default 520)
# bounds the whole matrix: QA=1 at 20 s a run is 10 scenarios x 2 kernels, so give it ~600 or shorten RUN_TIME.
# KERNELS (run_matrix.py --kernels, default cpu=fast,gpu=torch-cuda) sets each side's server settings, e.g.
# 'cpu=fast;SKIMSERVE_WORKERS=16,gpu=torch-cuda;SKIMSERVE_GPU_BATCH_SIZE=64;SKIMSERVE_GPU_BATCH_WAIT_MS=1';
# USERS (default 8) the concurrent users of the *-u<N> scenarios, a comma list (8,64).
set -uo pipefail
cd "$(dirname "$0")/.."
PREFIX=${1:-gpu}; RUN_TIME=${2:-20s}
PY=${PYTHON:-python3}
if ls .whl/*.whl >/dev/null 2>&1 && ! $PY -c "import locust, fastapi, uvicorn" 2>/dev/null; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=/tmp/site:${PYTHONPATH:-}
fi
export PYTHONPATH=$PWD:${PYTHONPATH:-} PYTHONUNBUFFERED=1
[ -d .carry/loadtest/data ] && export SKIMSERVE_DATA=${SKIMSERVE_DATA:-$PWD/.carry/loadtest/data}
DEST=${OUT:-loadtest/results}/cpu-vs-gpu; mkdir -p "$DEST"
{ date -u; nvidia-smi -L; nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv; lscpu;
  $PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'cudnn', torch.backends.cudnn.version())"; } \
  > "$DEST/hardware.txt" 2>&1
[ -f setup.py ] && $PY setup.py -q build_ext --inplace > "$DEST/build_fast.log" 2>&1
$PY -m pytest -q -p no:cacheprovider tests/test_gpu_backend.py tests/test_gpu_batch.py > "$DEST/gpu_backend_tests.txt" 2>&1
$PY -c "import service.api" || { echo "the server (service.api) does not import here" >&2; exit 1; }
MATRIX_ARGS=()
case "${QA:-}" in
  ""|0) ;;
  only) MATRIX_ARGS+=(--qa --only "${ONLY:-skim-qa-u1,skim-qa-u8,dense-qa-u1,dense-qa-u8}") ;;
  *) MATRIX_ARGS+=(--qa) ;;
esac
[ -n "${ONLY:-}" ] && [ "${QA:-}" != only ] && MATRIX_ARGS+=(--only "$ONLY")
timeout "${MATRIX_TIMEOUT:-520}" $PY loadtest/run_matrix.py --models-dir models --kernels "${KERNELS:-cpu=fast,gpu=torch-cuda}" \
  --users "${USERS:-8}" --run-time "$RUN_TIME" --prefix "$PREFIX" --results "$DEST" "${MATRIX_ARGS[@]}" > "$DEST/matrix.log" 2>&1
echo "run_matrix rc=$?" >> "$DEST/matrix.log"
[ -n "${OUT:-}" ] && tar czf "$OUT/results.tgz" -C "$OUT" cpu-vs-gpu
tail -5 "$DEST/matrix.log"; tail -3 "$DEST/gpu_backend_tests.txt"
