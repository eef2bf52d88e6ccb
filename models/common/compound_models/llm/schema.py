"""OpenAI chat-completions request validation and response shaping.

Validation errors become `InputError`s naming the offending field (e.g.
`messages.0.role`), so the Truss answers 400 instead of a 500 from a pydantic traceback.
Unknown request fields are ignored, as OpenAI-compatible servers do (clients send
`model`, `user`, `stream_options`, ...).
"""
from __future__ import annotations

import time
import uuid
from typing import Any, List, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, StrictBool, ValidationError, field_validator

from compound_models.errors import InputError

# Roles the chat template understands. "developer" is OpenAI's newer name for "system".
ROLES = ("system", "developer", "user", "assistant")


class TextPart(BaseModel):
    model_config = ConfigDict(extra="ignore")
    type: Literal["text"]
    text: str


class Message(BaseModel):
    model_config = ConfigDict(extra="ignore")
    role: str
    content: Union[str, List[TextPart]]

    @field_validator("role")
    @classmethod
    def _known_role(cls, role: str) -> str:
        if role not in ROLES:
            raise ValueError(f"unknown role {role!r}; expected one of {', '.join(ROLES)}")
        return role

    def normalized(self) -> dict:
        """The {role, content: str} dict chat templates expect."""
        content = self.content if isinstance(self.content, str) else "".join(p.text for p in self.content)
        return {"role": "system" if self.role == "developer" else self.role, "content": content}


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="ignore")
    include_usage: StrictBool = False


class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    messages: List[Message] = Field(min_length=1)
    model: Optional[str] = None
    max_tokens: Optional[int] = Field(default=None, gt=0)
    # OpenAI's newer name for max_tokens; either is accepted.
    max_completion_tokens: Optional[int] = Field(default=None, gt=0)
    temperature: float = Field(default=1.0, ge=0.0, le=2.0)
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    stop: Optional[Union[str, List[str]]] = None
    seed: Optional[int] = None
    stream: StrictBool = False
    stream_options: Optional[StreamOptions] = None
    n: int = Field(default=1, ge=1, le=1)

    @field_validator("stop")
    @classmethod
    def _stop_list(cls, stop):
        if stop is None:
            return []
        stops = [stop] if isinstance(stop, str) else stop
        if len(stops) > 4:
            raise ValueError("at most 4 stop sequences")
        if any(s == "" for s in stops):
            raise ValueError("stop sequences must be non-empty")
        return stops

    @property
    def requested_max_tokens(self) -> Optional[int]:
        return self.max_completion_tokens or self.max_tokens

    @property
    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)


def _field_name(loc: tuple) -> str:
    parts = [str(p) for p in loc if not (isinstance(p, str) and p in ("str", "list[TextPart]"))]
    return ".".join(parts) or "body"


def parse_request(body: Any) -> ChatRequest:
    """Validate a request body; raise InputError (400) naming the first bad field."""
    if not isinstance(body, dict):
        raise InputError("request body must be a JSON object with a 'messages' list", field="body")
    try:
        return ChatRequest.model_validate(body)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        # With union-typed fields pydantic reports one error per union member; the
        # first names the field well enough, the message lists all of them.
        field = _field_name(errors[0]["loc"])
        message = errors[0]["msg"].removeprefix("Value error, ")
        others = [f"{_field_name(e['loc'])}: {e['msg'].removeprefix('Value error, ')}" for e in errors[1:3]]
        if others:
            message += " (also " + "; ".join(others) + ")"
        raise InputError(message, field=field) from None


# --- responses ---------------------------------------------------------------------------


def completion_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex}"


def usage(prompt_tokens: int, completion_tokens: int) -> dict:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def completion(cid: str, model: str, text: str, finish_reason: str,
               prompt_tokens: int, completion_tokens: int) -> dict:
    return {
        "id": cid,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": text},
            "logprobs": None,
            "finish_reason": finish_reason,
        }],
        "usage": usage(prompt_tokens, completion_tokens),
    }


def chunk(cid: str, model: str, created: int, delta: dict, finish_reason: Optional[str] = None,
          with_usage_field: bool = False) -> dict:
    body = {
        "id": cid,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
    }
    if with_usage_field:
        # OpenAI sends "usage": null on every chunk when include_usage is on.
        body["usage"] = None
    return body


def usage_chunk(cid: str, model: str, created: int, prompt_tokens: int, completion_tokens: int) -> dict:
    """The final chunk of `stream_options.include_usage`: no choices, only usage."""
    return {
        "id": cid,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [],
        "usage": usage(prompt_tokens, completion_tokens),
    }
