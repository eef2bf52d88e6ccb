#!/usr/bin/env bash
# Create ./.venv and install compound with the given extras. Idempotent: it
# reinstalls only when pyproject.toml or the extras change (stamp file).
# Usage: scripts/bootstrap.sh [EXTRAS]   e.g. scripts/bootstrap.sh test,load,postgres
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-}"
python="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  echo "[bootstrap] creating .venv with $($python --version)"
  "$python" -m venv .venv
  .venv/bin/pip install --quiet --upgrade pip wheel setuptools
fi
stamp=".venv/.compound-install-stamp"
want="$(sha256sum pyproject.toml | cut -c1-16)-${extras}"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  spec="."
  [ -n "$extras" ] && spec=".[${extras}]"
  echo "[bootstrap] installing compound${extras:+ [$extras]} into .venv (first run builds llama-cpp-python: a few minutes)"
  CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-2}" \
    .venv/bin/pip install --quiet --progress-bar off -e "$spec"
  echo "$want" > "$stamp"
fi
