#!/usr/bin/env bash
# Create (or update) the project's virtual environment with everything the app and tests need.
#
#   scripts/bootstrap.sh            # app dependencies
#   scripts/bootstrap.sh test       # plus test and lint tools
#
# Environment overrides:
#   PYTHON=python3.12               interpreter for the venv (3.11 or newer)
#   VENV=.venv                      where the venv lives
#   TORCH_SPEC="torch==2.13.0"      which torch to install when none is present
#   TORCH_INDEX_URL=URL             install torch from this index only, e.g.
#                                   https://download.pytorch.org/whl/cu124 for a CUDA build
# Without TORCH_INDEX_URL: on a machine with an NVIDIA driver (nvidia-smi) torch comes from PyPI
# (CUDA build); elsewhere the CPU build is preferred (PyTorch's CPU index is added).
set -euo pipefail
cd "$(dirname "$0")/.."

extra="${1:-app}"
PYTHON="${PYTHON:-python3}"
VENV="${VENV:-.venv}"
TORCH_SPEC="${TORCH_SPEC:-torch==2.13.0}"
TORCH_INDEX_URL="${TORCH_INDEX_URL:-}"
CPU_INDEX="https://download.pytorch.org/whl/cpu"

log() { printf '[bootstrap] %s\n' "$*" >&2; }

if ! command -v "$PYTHON" >/dev/null 2>&1; then
  log "no '$PYTHON' on PATH: install Python 3.11 or newer, or set PYTHON=/path/to/python3"
  exit 1
fi
if ! "$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)'; then
  log "$("$PYTHON" --version 2>&1) is too old: implicit-viz needs Python 3.11 or newer"
  exit 1
fi

if [ ! -x "$VENV/bin/python" ]; then
  log "creating virtual environment in $VENV"
  "$PYTHON" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check)

if ! "$VENV/bin/python" -c 'import torch' >/dev/null 2>&1; then
  if [ -n "$TORCH_INDEX_URL" ]; then
    log "installing $TORCH_SPEC from $TORCH_INDEX_URL"
    "${PIP[@]}" install "$TORCH_SPEC" --index-url "$TORCH_INDEX_URL"
  elif command -v nvidia-smi >/dev/null 2>&1; then
    log "NVIDIA driver found: installing $TORCH_SPEC (CUDA build) from PyPI"
    "${PIP[@]}" install "$TORCH_SPEC"
  else
    log "no GPU driver found: installing $TORCH_SPEC, CPU build preferred"
    "${PIP[@]}" install "$TORCH_SPEC" --extra-index-url "$CPU_INDEX" --retries 1 --timeout 20
  fi
fi

target="."
[ "$extra" = "test" ] && target=".[test]"
# Reinstall only when pyproject.toml changed or the extra is new.
stamp="$VENV/.implicit-viz-$extra.stamp"
want="$(cksum pyproject.toml | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ] || ! "$VENV/bin/python" -c 'import implicit_viz' >/dev/null 2>&1; then
  log "installing implicit-viz ($extra) into $VENV"
  "${PIP[@]}" install -q -e "$target"
  echo "$want" > "$stamp"
fi
