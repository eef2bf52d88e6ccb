#!/usr/bin/env bash
# README command: run benchmark suites side by side with their references.
#   scripts/bench.sh [llm|whisper|json|tts|chain|all] [OUT_DIR]
# Each suite writes OUT_DIR/<suite>/results.json and PNG plots, and prints a table.
set -euo pipefail
cd "$(dirname "$0")/.."
# Same extras as scripts/test.sh (so the two do not reinstall each other); `reference`
# brings openai-whisper + torch, the whisper suite's reference.
scripts/bootstrap.sh test,load,postgres,reference
suite="${1:-all}"
out="${2:-bench-results}"
exec .venv/bin/compound bench "$suite" --out "$out"
