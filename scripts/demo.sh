#!/usr/bin/env bash
# README command 1: set up and run the main job (full local stack, bundled
# models, the voice and extract chains end to end on a bundled recording).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh postgres
exec .venv/bin/compound demo "$@"
