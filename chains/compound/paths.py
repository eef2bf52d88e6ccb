"""Where things live in a compound checkout."""
from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
MODELS_DIR = REPO_ROOT / "models"
ENGINES_DIR = REPO_ROOT / "engines"


def state_dir() -> Path:
    """Scratch state (built Truss file systems, job stores); git-ignored."""
    path = Path(os.environ.get("COMPOUND_STATE_DIR", REPO_ROOT / ".compound"))
    path.mkdir(parents=True, exist_ok=True)
    return path
