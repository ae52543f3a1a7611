# Sourced by scripts/serve.sh and scripts/test.sh: cd to the project root, create and activate .venv,
# install the package (which builds the C kernel) with the extras named in $1 (e.g. "[dev,train]").
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if [ ! -x .venv/bin/python ]; then
  "${PYTHON:-python3}" -m venv .venv
fi
. .venv/bin/activate
python -m pip install -q --upgrade pip
python -m pip install -q -e ".${1:-}"
