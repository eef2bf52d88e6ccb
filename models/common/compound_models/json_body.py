"""Parse a request's JSON body ourselves, turning every malformed body into a 400.

Truss's server parses JSON (and msgpack) bodies before model code runs and turns only
`JSONDecodeError` into a 400: a deeply nested body (RecursionError) or invalid UTF-8
becomes a 500. A Model whose `predict` takes only the `request` gets the raw body, and
parses it with this instead.
"""
from __future__ import annotations

import json
import re
from typing import Any

from compound_models.errors import InputError

DEFAULT_MAX_DEPTH = 64
_SURROGATE = re.compile("[\ud800-\udfff]")


def parse_json_body(raw: bytes, *, max_depth: int = DEFAULT_MAX_DEPTH) -> Any:
    if not raw.strip():
        raise InputError("request body is empty; expected a JSON object")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"request body is not valid UTF-8 (bad byte at offset {exc.start})") from exc
    try:
        value = json.loads(text)
    except RecursionError as exc:
        raise InputError(f"request body is nested deeper than {max_depth} levels") from exc
    except ValueError as exc:  # JSONDecodeError, or an integer over Python's 4300-digit limit
        raise InputError(f"request body is not valid JSON: {exc}") from exc
    _check_structure(value, max_depth)
    return value


def _check_structure(value: Any, max_depth: int) -> None:
    """Depth limit, and no lone UTF-16 surrogates (valid JSON escapes, unencodable text)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (dict, list)):
            if depth > max_depth:
                raise InputError(f"request body is nested deeper than {max_depth} levels")
            children = item.items() if isinstance(item, dict) else enumerate(item)
            for key, child in children:
                if isinstance(key, str) and _SURROGATE.search(key):
                    raise InputError("a key contains a lone UTF-16 surrogate escape (not valid text)")
                stack.append((child, depth + 1))
        elif isinstance(item, str) and _SURROGATE.search(item):
            raise InputError("a string contains a lone UTF-16 surrogate escape (not valid text)")


def parse_msgpack_body(raw: bytes, *, max_depth: int = DEFAULT_MAX_DEPTH) -> Any:
    """Truss clients send msgpack as application/octet-stream; accept it as Truss does."""
    import msgpack

    try:
        value = msgpack.unpackb(raw, raw=False)
    except Exception as exc:  # msgpack raises several unrelated types for bad input
        raise InputError(f"application/octet-stream body is not valid msgpack ({type(exc).__name__})") from exc
    _check_structure(value, max_depth)
    return value


async def read_json_body(request, *, max_depth: int = DEFAULT_MAX_DEPTH) -> Any:
    """The parsed body of a starlette Request: msgpack when sent as octet-stream, else JSON."""
    raw = await request.body()
    if request.headers.get("content-type", "").startswith("application/octet-stream"):
        return parse_msgpack_body(raw, max_depth=max_depth)
    return parse_json_body(raw, max_depth=max_depth)
