"""Business checks on extracted records: small declarative facts a request can carry.

    {"field": "party_size", "op": ">", "value": 0}
    {"field": "name", "op": "nonempty", "message": "the booking needs a name"}

`evaluate` returns the failed facts in words; the extract chains append them to the prompt
when they ask the json node again.
"""
from __future__ import annotations

import re
from typing import Any, Literal, Optional

import jsonschema
from pydantic import BaseModel, ConfigDict, Field, model_validator

Op = Literal[">", ">=", "<", "<=", "==", "!=", "in", "not_in", "regex", "nonempty", "exists"]
_NEEDS_VALUE = {">", ">=", "<", "<=", "==", "!=", "in", "not_in", "regex"}
_MISSING = object()


class Check(BaseModel):
    model_config = ConfigDict(extra="forbid")
    field: str = Field(..., min_length=1, description="dotted path into the record, e.g. 'party_size'")
    op: Op
    value: Any = None
    message: Optional[str] = Field(None, description="the fact in words, used as feedback when it fails")

    @model_validator(mode="after")
    def _value_fits_op(self):
        if self.op in _NEEDS_VALUE and self.value is None:
            raise ValueError(f"op {self.op!r} needs a value")
        if self.op in ("in", "not_in") and not isinstance(self.value, list):
            raise ValueError(f"op {self.op!r} needs a list value")
        if self.op == "regex":
            try:
                re.compile(str(self.value))
            except re.error as exc:
                raise ValueError(f"invalid regex {self.value!r}: {exc}") from exc
        return self

    def describe(self) -> str:
        if self.message:
            return self.message
        if self.op == "nonempty":
            return f"{self.field} must not be empty"
        if self.op == "exists":
            return f"{self.field} must be present"
        if self.op == "regex":
            return f"{self.field} must match /{self.value}/"
        if self.op in ("in", "not_in"):
            return f"{self.field} must {'be one of' if self.op == 'in' else 'not be one of'} {self.value!r}"
        return f"{self.field} must be {self.op} {self.value!r}"


def _lookup(record: Any, path: str) -> Any:
    value = record
    for part in path.split("."):
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return _MISSING
    return value


def _holds(check: Check, actual: Any) -> bool:
    op, want = check.op, check.value
    if op == "exists":
        return actual is not _MISSING and actual is not None
    if actual is _MISSING or actual is None:
        return False
    if op == "nonempty":
        return not (isinstance(actual, (str, list, dict)) and len(actual if not isinstance(actual, str) else actual.strip()) == 0)
    if op == "regex":
        return isinstance(actual, str) and re.search(str(want), actual) is not None
    if op == "in":
        return actual in want
    if op == "not_in":
        return actual not in want
    if op == "==":
        return actual == want
    if op == "!=":
        return actual != want
    try:
        return {">": actual > want, ">=": actual >= want, "<": actual < want, "<=": actual <= want}[op]
    except TypeError:  # e.g. "4" > 0: a wrong type is a failed fact, not a crash
        return False


def evaluate(record: Any, checks: list[Check]) -> list[str]:
    """Failed facts, e.g. ["party_size must be > 0 (got 0)"]; empty when all hold."""
    failed = []
    for check in checks:
        actual = _lookup(record, check.field)
        if not _holds(check, actual):
            got = "missing" if actual is _MISSING else repr(actual)
            failed.append(f"{check.describe()} (got {got})")
    return failed


def check_json_schema(schema: dict) -> dict:
    """A JSON Schema for one record (an object with properties); raises ValueError otherwise."""
    try:
        jsonschema.validators.validator_for(schema).check_schema(schema)
    except jsonschema.SchemaError as exc:
        raise ValueError(f"not a valid JSON Schema: {exc.message}") from exc
    except RecursionError as exc:  # hostile, absurdly nested schema
        raise ValueError("the JSON Schema is nested too deeply") from exc
    if schema.get("type") != "object" or not isinstance(schema.get("properties"), dict):
        raise ValueError('the schema must describe one record: {"type": "object", "properties": {...}}')
    return schema


def check_fields_exist(schema: dict, checks: list[Check]) -> None:
    props = schema.get("properties", {})
    for i, check in enumerate(checks):
        top = check.field.split(".")[0]
        if top not in props:
            raise ValueError(f"checks[{i}].field {check.field!r} is not a property of the schema "
                             f"(properties: {', '.join(props)})")


def schema_errors(schema: dict, value: Any) -> list[str]:
    validator = jsonschema.validators.validator_for(schema)(schema)
    out = []
    for err in sorted(validator.iter_errors(value), key=lambda e: list(e.path)):
        where = "/".join(str(p) for p in err.path) or "(record)"
        out.append(f"{where}: {err.message}")
    return out
