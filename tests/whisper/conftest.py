"""Whisper test helpers: `speech` importable from here, and the server URL fixture.

`whisper_server` is the lead's session fixture `whisper_url` (tests/conftest.py: the real
Truss served by Truss's own server), or COMPOUND_WHISPER_URL when set (a server already
running, e.g. started by hand).
"""
import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/ → `import speech`


@pytest.fixture(scope="session")
def whisper_server(request) -> str:
    url = os.environ.get("COMPOUND_WHISPER_URL")
    if url:
        return url.rstrip("/")
    return request.getfixturevalue("whisper_url")
