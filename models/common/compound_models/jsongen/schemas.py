"""Schema admission and identity.

Every schema is checked before it reaches a compiler: size/depth/node limits (a huge schema
must not tie up a compile worker), then the JSON Schema Draft 2020-12 meta-schema.
Semantic problems (unsatisfiable, unsupported keywords) are what the compiler rejects; see
`compilers`. The canonical hash (sorted keys, compact separators, sha256) is the cache key, so
key order and whitespace in a client's schema do not defeat the cache.
"""
from __future__ import annotations

import hashlib
import json
from typing import Any

import jsonschema
from jsonschema import Draft202012Validator

from compound_models.errors import InputError

from .settings import Limits


def canonical_json(schema: Any) -> str:
    return json.dumps(schema, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def schema_hash(schema: Any) -> str:
    return hashlib.sha256(canonical_json(schema).encode("utf-8")).hexdigest()


def _depth_and_nodes(value: Any) -> tuple[int, int]:
    """Nesting depth and node count, iteratively (a deep schema must not hit the recursion limit)."""
    max_depth, nodes = 0, 0
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        nodes += 1
        max_depth = max(max_depth, depth)
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)
    return max_depth, nodes


def check_schema(schema: Any, limits: Limits, field: str = "schema") -> None:
    """Raise InputError (400) naming the problem; returns None when the schema is admissible."""
    if not isinstance(schema, dict):
        raise InputError(f"must be a JSON object (a JSON Schema), got {type(schema).__name__}", field)
    size = len(canonical_json(schema).encode("utf-8"))
    if size > limits.max_schema_bytes:
        raise InputError(f"schema is too large: {size} bytes > limit {limits.max_schema_bytes}", field)
    depth, nodes = _depth_and_nodes(schema)
    if depth > limits.max_schema_depth:
        raise InputError(f"schema is too deep: nesting depth {depth} > limit {limits.max_schema_depth}", field)
    if nodes > limits.max_schema_nodes:
        raise InputError(f"schema is too large: {nodes} nodes > limit {limits.max_schema_nodes}", field)
    try:
        Draft202012Validator.check_schema(schema)
    except jsonschema.SchemaError as exc:
        where = "/".join(str(p) for p in exc.absolute_path) or "(root)"
        raise InputError(f"invalid JSON Schema (Draft 2020-12) at {where}: {exc.message}", field) from exc


def validation_error(value: Any, schema: dict) -> str | None:
    """The first schema violation of `value` as text, or None when it is valid."""
    validator = Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)
    error = jsonschema.exceptions.best_match(validator.iter_errors(value))
    if error is None:
        return None
    where = "/".join(str(p) for p in error.absolute_path) or "(root)"
    return f"at {where}: {error.message}"
