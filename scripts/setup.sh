#!/usr/bin/env bash
# Creates .venv with the locked dependencies and the package itself (editable).
# On a fresh Debian/Ubuntu machine python3-venv may be missing: install it through apt.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}

log() { printf 'setup: %s\n' "$*" >&2; }

if ! "$PYTHON" -c 'import ensurepip, venv' 2>/dev/null; then
  if [[ $EUID -ne 0 ]]; then
    log "python venv support is missing; install python3-venv (needs root)"; exit 1
  fi
  log "installing python3-venv through apt"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq python3-venv >/dev/null
fi

if [[ ! -x .venv/bin/python ]]; then
  log "creating .venv with $("$PYTHON" --version)"
  "$PYTHON" -m venv .venv
fi
log "installing the locked dependencies"
.venv/bin/python -m pip install -q --disable-pip-version-check --require-hashes -r requirements.lock
.venv/bin/python -m pip install -q --disable-pip-version-check --no-deps -e .
log "ready: .venv/bin/patient-search"
