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


# Keywords whose values are one subschema, a map of subschemas, or a list of subschemas.
_ONE = ("items", "additionalProperties", "contains", "propertyNames", "not", "if", "then", "else",
        "unevaluatedItems", "unevaluatedProperties")
_MAP = ("properties", "patternProperties", "dependentSchemas")
_DEFS = ("$defs", "definitions")
_BRANCHES = ("allOf", "anyOf", "oneOf")
# An object that says any of these decides its own extra keys, or composes with siblings.
_KEEP_OPEN = ("additionalProperties", "patternProperties", "unevaluatedProperties", "$ref",
              "if", "dependentSchemas", *_BRANCHES)


def _composed_refs(schema: Any) -> set[str]:
    """`$ref` targets that are combined with other keywords (siblings, or a branch of a
    composition): closing those definitions would forbid the keys added next to them."""
    found: set[str] = set()
    stack: list[tuple[Any, bool]] = [(schema, False)]
    while stack:
        node, in_branch = stack.pop()
        if isinstance(node, list):
            stack.extend((item, in_branch) for item in node)
            continue
        if not isinstance(node, dict):
            continue
        ref = node.get("$ref")
        if isinstance(ref, str) and (in_branch or len(node) > 1):
            found.add(ref)
        for key, value in node.items():
            stack.append((value, key in _BRANCHES))
    return found


def generation_schema(schema: dict) -> dict:
    """The schema the grammar is compiled from: objects that list `properties` but do not say
    whether other keys are allowed get `additionalProperties: false`.

    JSON Schema leaves such objects open, and a small model then keeps inventing keys until the
    token budget runs out. Closed objects are a subset of what the schema accepts (outputs are
    still validated against the client's own schema) and are what OpenAI's structured outputs
    require too. Left open, because closing would forbid keys the schema allows elsewhere:
    objects with an explicit `additionalProperties`/`patternProperties`; objects that compose
    (`allOf`/`anyOf`/`oneOf`/`$ref`/`if`); `allOf` branches, and `anyOf`/`oneOf` branches
    that combine with keywords beside them (alone they are alternatives and are closed); definitions
    that a `$ref` combines with other keywords; objects whose `required` names keys missing
    from `properties`. `llguidance_grammar` also falls back to the schema as given if the
    closed one would be rejected.
    """
    composed = _composed_refs(schema)

    def close(node: Any, compose: bool = False) -> Any:
        if isinstance(node, list):
            return [close(item) for item in node]
        if not isinstance(node, dict):
            return node
        out = dict(node)
        for key in _ONE:
            if isinstance(node.get(key), (dict, list)):
                out[key] = close(node[key])
        for key in _MAP:
            if isinstance(node.get(key), dict):
                out[key] = {name: close(sub) for name, sub in node[key].items()}
        for key in _DEFS:
            if isinstance(node.get(key), dict):
                out[key] = {name: close(sub, compose=f"#/{key}/{name}" in composed)
                            for name, sub in node[key].items()}
        # allOf branches always combine; anyOf/oneOf branches combine with what sits next to
        # them (parent properties, a $ref, an enclosing allOf) — alone, they are alternatives.
        with_siblings = compose or any(key in node for key in (
            "properties", "required", "patternProperties", "additionalProperties", "$ref", "allOf"))
        for key in _BRANCHES:
            if isinstance(node.get(key), list):
                branch_compose = key == "allOf" or with_siblings
                out[key] = [close(sub, compose=branch_compose) for sub in node[key]]
        properties = node.get("properties")
        required = node.get("required") if isinstance(node.get("required"), list) else []
        if (isinstance(properties, dict) and not compose
                and not any(key in node for key in _KEEP_OPEN)
                and all(name in properties for name in required)):
            out["additionalProperties"] = False
        return out

    return close(schema)


def validation_error(value: Any, schema: dict) -> str | None:
    """The first schema violation of `value` as text, or None when it is valid."""
    validator = Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)
    error = jsonschema.exceptions.best_match(validator.iter_errors(value))
    if error is None:
        return None
    where = "/".join(str(p) for p in error.absolute_path) or "(root)"
    return f"at {where}: {error.message}"
