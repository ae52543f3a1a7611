#!/usr/bin/env bash
# Set up (venv + package, builds the C kernel) and serve the shipped models on http://127.0.0.1:8000.
# Extra arguments go to `skimserve serve`, e.g. scripts/serve.sh --port 9000 --kernel reference
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -x .venv/bin/python ]; then
  "${PYTHON:-python3}" -m venv .venv
fi
. .venv/bin/activate
python -m pip install -q --upgrade pip
python -m pip install -q -e .
exec python -m service serve --models-dir models --host 127.0.0.1 --port 8000 --default-model sst2-skim "$@"
