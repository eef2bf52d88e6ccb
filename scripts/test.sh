#!/usr/bin/env bash
# README command 2: set up and run the test suite (also what CI runs).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh test,load,postgres,reference
exec .venv/bin/python -m pytest "$@"
