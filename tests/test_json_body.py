"""compound_models.json_body: every malformed body is an InputError (→ 400), never a crash."""
import json

import msgpack
import pytest

from compound_models.errors import InputError
from compound_models.json_body import parse_json_body, parse_msgpack_body


@pytest.mark.parametrize("raw, fragment", [
    (b"", "empty"),
    (b"   ", "empty"),
    (b"\xff\xfe{}", "not valid UTF-8"),
    (b"{nope", "not valid JSON"),
    (b"[" * 100_000 + b"]" * 100_000, "nested deeper"),
    (json.dumps({"a": [[[[{"b": 1}]]]]}).encode(), "nested deeper"),
    (b'{"text": "\\ud800"}', "surrogate"),
    (b'{"\\udc00": 1}', "surrogate"),
])
def test_malformed_json_bodies_are_input_errors(raw, fragment):
    max_depth = 4 if b'"b"' in raw else 64
    with pytest.raises(InputError, match=fragment):
        parse_json_body(raw, max_depth=max_depth)


def test_valid_bodies_parse_unchanged():
    body = {"input": "héllo 👋", "nested": {"list": [1, 2.5, None, True]}}
    assert parse_json_body(json.dumps(body).encode()) == body
    assert parse_msgpack_body(msgpack.packb(body)) == body


def test_json_sent_as_msgpack_is_refused():
    with pytest.raises(InputError, match="not valid msgpack"):
        parse_msgpack_body(b'{"input": "hi"}')
