"""Locust smoke run (seconds) against the real local stack: every user class of
tests/load/locustfile.py makes requests, and none fails. Figures are printed, not asserted."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.load

LOCUSTFILE = Path(__file__).parent / "load" / "locustfile.py"
EXPECTED = ("llm /predict", "whisper /predict", "json /predict", "tts /predict",
            "chain extract /run", "chain extract /async", "chain extract job (submit -> done)")


def test_locust_smoke_all_targets_no_failures(stack, tmp_path):
    env_urls = {f"COMPOUND_LOAD_URL_{name.upper()}": url for name, url in stack.items()}
    final_stats = tmp_path / "stats.json"
    # One user per class (6 classes); --stop-timeout lets in-flight chain runs finish.
    command = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless",
               "-u", "6", "-r", "6", "-t", "8s", "--stop-timeout", "90",
               "--host", stack["chain"], "--only-summary", "--json-file", str(final_stats.with_suffix("")),
               "--loglevel", "WARNING"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=240,
                            env={**os.environ, **env_urls})
    print(result.stdout[-5000:], result.stderr[-5000:])  # the summary table, for the log
    stats = {row["name"]: row for row in json.loads(final_stats.read_text())}
    failures = {name: row["num_failures"] for name, row in stats.items() if row["num_failures"]}
    assert not failures, f"failed requests: {failures}\n{result.stderr[-3000:]}"
    missing = [name for name in EXPECTED if stats.get(name, {}).get("num_requests", 0) < 1]
    assert not missing, f"no requests made for {missing}; stats: {sorted(stats)}\n{result.stderr[-3000:]}"
    assert result.returncode == 0, result.stderr[-3000:]
