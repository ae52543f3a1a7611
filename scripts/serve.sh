#!/usr/bin/env bash
# Set up (venv + package, builds the C kernel) and serve the shipped models on http://127.0.0.1:8000.
# Extra arguments go to `skimserve serve`, e.g. scripts/serve.sh --port 9000 --kernel reference
. "$(dirname "$0")/_venv.sh" ""
exec python -m service serve --models-dir models --host 127.0.0.1 --port 8000 --default-model sst2-skim "$@"
