"""Request parsing and response shaping for the json Truss (predict + OpenAI chat completions)."""
from __future__ import annotations

import time
import uuid
from typing import Any, Callable, Mapping

from compound_models.errors import InputError

from .engine import JsonRequest, JsonResult
from .settings import Settings

_ROLES = {"system", "user", "assistant"}


def _messages(value: Any, field: str = "messages") -> list[dict]:
    if not isinstance(value, list) or not value:
        raise InputError("must be a non-empty list of {role, content} messages", field)
    out = []
    for i, message in enumerate(value):
        if not isinstance(message, Mapping):
            raise InputError("each message must be an object with role and content", f"{field}[{i}]")
        role, content = message.get("role"), message.get("content")
        if role not in _ROLES:
            raise InputError(f"role must be one of {sorted(_ROLES)}, got {role!r}", f"{field}[{i}].role")
        if isinstance(content, list):  # OpenAI content parts: text only
            if not all(isinstance(p, Mapping) and p.get("type") == "text" for p in content):
                raise InputError("only text content parts are supported", f"{field}[{i}].content")
            content = "".join(str(p.get("text", "")) for p in content)
        if not isinstance(content, str):
            raise InputError("content must be a string", f"{field}[{i}].content")
        out.append({"role": role, "content": content})
    return out


def _sampling(body: Mapping, settings: Settings, max_tokens_field: str = "max_tokens") -> dict:
    out: dict[str, Any] = {}
    max_tokens = body.get(max_tokens_field)
    if max_tokens is not None:
        if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
            raise InputError("must be a positive integer", max_tokens_field)
        if max_tokens > settings.max_tokens_limit:
            raise InputError(f"must be <= {settings.max_tokens_limit}", max_tokens_field)
        out["max_tokens"] = max_tokens
    temperature = body.get("temperature")
    if temperature is not None:
        if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not 0 <= temperature <= 2:
            raise InputError("must be a number in [0, 2]", "temperature")
        out["temperature"] = float(temperature)
    seed = body.get("seed")
    if seed is not None:
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise InputError("must be a non-negative integer", "seed")
        out["seed"] = seed
    return out


def parse_predict(body: Any, settings: Settings, named_schema: Callable[[Any], dict]) -> JsonRequest:
    """`{"schema"|"schema_name", "prompt"|"messages", max_tokens?, temperature?, seed?}`."""
    if not isinstance(body, Mapping):
        raise InputError("request body must be a JSON object")
    if ("schema" in body) == ("schema_name" in body):
        raise InputError("give exactly one of 'schema' (inline JSON Schema) or 'schema_name'", "schema")
    schema_name = body.get("schema_name")
    schema = named_schema(schema_name) if "schema_name" in body else body["schema"]
    if ("prompt" in body) == ("messages" in body):
        raise InputError("give exactly one of 'prompt' or 'messages'", "prompt")
    if "messages" in body:
        messages = _messages(body["messages"])
    else:
        prompt = body["prompt"]
        if not isinstance(prompt, str) or not prompt.strip():
            raise InputError("must be a non-empty string", "prompt")
        # As Outlines' llama.cpp model does in chat mode: a prompt is one user message, so the
        # instruct model sees its chat template (raw completion text makes strings run away).
        messages = [{"role": "user", "content": prompt}]
    if messages is not None and schema_name in settings.system_prompts \
            and not any(m["role"] == "system" for m in messages):
        messages = [{"role": "system", "content": settings.system_prompts[schema_name]}] + messages
    return JsonRequest(schema=schema, messages=messages, schema_name=schema_name,
                       **_sampling(body, settings))


def _response_format_schema(response_format: Any) -> dict:
    # No response_format: this endpoint exists to produce JSON, so behave as json_object.
    if response_format is None:
        return {"type": "object"}
    if not isinstance(response_format, Mapping):
        raise InputError("must be an object", "response_format")
    kind = response_format.get("type")
    if kind == "json_object":
        return {"type": "object"}
    if kind == "json_schema":
        spec = response_format.get("json_schema")
        if not isinstance(spec, Mapping):
            raise InputError("must be an object with name and schema", "response_format.json_schema")
        if not isinstance(spec.get("name"), str) or not spec["name"]:
            raise InputError("name is required", "response_format.json_schema.name")
        if "schema" not in spec:
            raise InputError("schema is required", "response_format.json_schema.schema")
        return spec["schema"]  # `strict` is implied: output is always constrained and validated
    raise InputError(f"type must be 'json_schema' or 'json_object', got {kind!r} "
                     "(this endpoint only produces JSON)", "response_format.type")


def parse_chat(body: Any, settings: Settings) -> JsonRequest:
    if not isinstance(body, Mapping):
        raise InputError("request body must be a JSON object")
    if body.get("stream"):
        raise InputError("streaming is not supported by the json model", "stream")
    if body.get("n") not in (None, 1):
        raise InputError("only n=1 is supported", "n")
    sampling = _sampling(body, settings)
    if "max_tokens" not in sampling and body.get("max_completion_tokens") is not None:
        sampling["max_tokens"] = _sampling(body, settings, "max_completion_tokens")["max_tokens"]
    schema = _response_format_schema(body.get("response_format"))
    return JsonRequest(schema=schema, messages=_messages(body.get("messages")), **sampling)


def chat_response(result: JsonResult, model_name: str) -> dict:
    import json

    return {
        "id": f"chatcmpl-{uuid.uuid4().hex}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model_name,
        "choices": [{
            "index": 0,
            "message": {"role": "assistant",
                        "content": json.dumps(result.output, separators=(",", ":"), ensure_ascii=False)},
            "finish_reason": result.finish_reason,
        }],
        "usage": result.usage,
        "compound": {"cache_hit": result.cache_hit, "compile_ms": round(result.compile_ms, 3),
                     "backend": result.backend, "schema_hash": result.schema_hash},
    }
