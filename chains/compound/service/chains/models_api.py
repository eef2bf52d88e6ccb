"""Request builders and reply parsers for the model nodes (contract: notes/chain_interface.md)."""
from __future__ import annotations

import base64
from typing import Any, Optional

from pydantic import BaseModel, Field

from compound.service.chains.checks import schema_errors
from compound.service.graph import NodeError, Reply, RetryPolicy, StepInput

# How every built-in chain retries a model node (timeouts, connect errors, 5xx, bad output).
MODEL_RETRY = RetryPolicy(attempts=3, initial_delay_s=0.5, max_delay_s=4)


class Text(BaseModel):
    text: str


class NonEmptyText(BaseModel):
    text: str = Field(..., min_length=1)


class Record(BaseModel):
    record: dict


class Audio(BaseModel):
    audio_b64: str = Field(..., min_length=1)
    content_type: str
    bytes: int = Field(..., gt=0)


def _data(reply: Reply, node: str) -> dict:
    if not isinstance(reply.data, dict):
        raise NodeError("schema", f"{node} answered {reply.content_type or 'no content type'}, not a JSON object")
    return reply.data


def parse_transcript(reply: Reply, si: StepInput) -> dict:
    data = _data(reply, "whisper")
    if not isinstance(data.get("text"), str):
        raise NodeError("schema", "whisper reply has no 'text' string")
    return {"text": data["text"].strip()}


def parse_chat(reply: Reply, si: StepInput) -> dict:
    data = _data(reply, "llm")
    try:
        content = data["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError) as exc:
        raise NodeError("schema", "llm reply has no choices[0].message.content") from exc
    return {"text": (content or "").strip(), "usage": data.get("usage")}


def parse_audio(reply: Reply, si: StepInput) -> dict:
    if reply.data is not None or not reply.content:
        raise NodeError("schema", f"tts answered {reply.content_type!r} without audio bytes")
    return {"audio_b64": base64.b64encode(reply.content).decode(), "content_type": reply.content_type,
            "bytes": len(reply.content)}


def _field_list(schema: Optional[dict]) -> str:
    props = (schema or {}).get("properties") or {}
    return ", ".join(f"{k} ({v.get('description') or v.get('type', 'value')})" if isinstance(v, dict) else k
                     for k, v in props.items())


def extraction_messages(text: str, instructions: Optional[str], feedback: list[str],
                        schema: Optional[dict] = None) -> list[dict]:
    """Chat messages for the json node. Measured on the bundled small CPU model: a system
    message naming the keys (with descriptions) beats one long prompt; feedback goes last."""
    system = ("Extract the fields from the user's message as JSON with keys " + _field_list(schema) +
              ". Use only facts the message states. Copy names exactly; write numbers as digits.")
    if instructions:
        system += " " + instructions.strip()
    user = text.strip()
    if feedback:
        user += ("\n\nA previous answer broke these facts; fix them using the message:\n" +
                 "\n".join(f"- {fact}" for fact in feedback))
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def json_request(schema: dict, text: str, instructions: Optional[str], feedback: list[str],
                 max_tokens: int) -> dict:
    return {"schema": schema, "messages": extraction_messages(text, instructions, feedback, schema),
            "max_tokens": max_tokens}


def parse_record(reply: Reply, si: StepInput) -> dict:
    """json node reply -> {"record": ...}, re-validated against the schema we sent (never trust)."""
    data = _data(reply, "json")
    if "output" not in data:
        raise NodeError("schema", "json reply has no 'output'")
    record: Any = data["output"]
    schema = (reply.body or {}).get("schema") or {}
    problems = schema_errors(schema, record)
    if problems:
        raise NodeError("schema", "record does not match the schema: " + "; ".join(problems[:5]))
    return {"record": record}
