"""The shared schema set (schema_set.json): ≥ 20 varied schemas with a prompt each, used by
tests/test_json.py and `compound bench json` (cold compile, validity, backend comparison)."""
from __future__ import annotations

import json
from importlib import resources


def load_schema_set() -> list[dict]:
    """[{"name", "schema", "prompt"}, ...]"""
    text = resources.files(__package__).joinpath("schema_set.json").read_text(encoding="utf-8")
    return json.loads(text)["schemas"]
