"""The transcription request: parsed from a JSON body or an OpenAI-style multipart form.

JSON: `{"audio": "<base64>"}` or `{"url": "https://..."}` plus optional `response_format`,
`language`, `prompt`, `temperature`, `beam_size`, `timestamp_granularities`, `stream`.
Multipart: field `file` (the audio) plus the same fields as form values; OpenAI's SDK sends
`timestamp_granularities[]` repeated.
"""
from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional

from compound_models.errors import InputError

RESPONSE_FORMATS = ("json", "text", "srt", "vtt", "verbose_json")
GRANULARITIES = ("segment", "word")
MAX_BEAM_SIZE = 10


@dataclass
class TranscriptionRequest:
    audio: Optional[bytes] = None  # file bytes, when given inline
    url: Optional[str] = None
    response_format: str = "json"
    language: Optional[str] = None
    prompt: Optional[str] = None
    temperature: float = 0.0
    beam_size: Optional[int] = None  # None: the deployment's default (model_metadata.beam_size)
    timestamp_granularities: tuple[str, ...] = ("segment",)
    stream: bool = False
    extra: dict = field(default_factory=dict)

    @property
    def word_timestamps(self) -> bool:
        return "word" in self.timestamp_granularities


def from_json(body: Any, *, max_bytes: int) -> TranscriptionRequest:
    if not isinstance(body, Mapping):
        raise InputError("request body must be a JSON object")
    if body.get("audio") == "" and not body.get("url"):
        raise InputError("audio is empty (an empty base64 string)", field="audio")
    has_audio, has_url = body.get("audio") not in (None, ""), body.get("url") not in (None, "")
    if has_audio == has_url:
        raise InputError("give exactly one of 'audio' (base64) or 'url'",
                         field="audio" if not has_url else None)
    request = _options(body)
    if has_url:
        if not isinstance(body["url"], str):
            raise InputError("must be a string", field="url")
        request.url = body["url"]
    else:
        request.audio = decode_base64(body["audio"], max_bytes=max_bytes)
    return request


def decode_base64(value: Any, *, max_bytes: int) -> bytes:
    if not isinstance(value, str):
        raise InputError("must be a base64 string", field="audio")
    if value.startswith("data:"):  # data URL: data:audio/wav;base64,....
        value = value.partition(",")[2]
    if len(value) * 3 // 4 > max_bytes + 3:
        raise InputError(f"audio is larger than the limit of {max_bytes} bytes", field="audio",
                         status_code=413)
    try:
        data = base64.b64decode("".join(value.split()), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InputError(f"not valid base64 ({exc})", field="audio") from exc
    if not data:
        raise InputError("audio is empty (0 bytes)", field="audio")
    return data


async def from_form(form, *, max_bytes: int) -> TranscriptionRequest:
    """Starlette FormData of a multipart upload (field `file`) → request."""
    upload = form.get("file")
    if upload is None or isinstance(upload, str):
        raise InputError("multipart upload needs a file in field 'file'", field="file")
    data = await upload.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise InputError(f"file is larger than the limit of {max_bytes} bytes", field="file",
                         status_code=413)
    values: dict[str, Any] = {k: v for k, v in form.multi_items()
                              if isinstance(v, str) and not k.startswith("timestamp_granularities")}
    granularities = form.getlist("timestamp_granularities[]") + form.getlist("timestamp_granularities")
    if granularities:
        values["timestamp_granularities"] = granularities
    request = _options(values)
    request.audio = data
    request.extra["field"] = "file"
    return request


def _options(body: Mapping[str, Any]) -> TranscriptionRequest:
    request = TranscriptionRequest()
    fmt = body.get("response_format") or "json"
    if fmt not in RESPONSE_FORMATS:
        raise InputError(f"must be one of {', '.join(RESPONSE_FORMATS)}", field="response_format")
    request.response_format = fmt
    language = body.get("language")
    if language not in (None, ""):
        if not isinstance(language, str) or not 2 <= len(language) <= 3 or not language.isalpha():
            raise InputError("must be an ISO-639-1 code such as 'en'", field="language")
        request.language = language.lower()
    prompt = body.get("prompt")
    if prompt not in (None, ""):
        if not isinstance(prompt, str):
            raise InputError("must be a string", field="prompt")
        request.prompt = prompt
    temperature = body.get("temperature", 0.0)
    try:
        request.temperature = float(temperature if temperature not in (None, "") else 0.0)
    except (TypeError, ValueError, OverflowError) as exc:
        raise InputError("must be a number", field="temperature") from exc
    if not 0.0 <= request.temperature <= 1.0:
        raise InputError("must be between 0 and 1", field="temperature")
    beam_size = body.get("beam_size")
    if beam_size not in (None, ""):
        request.beam_size = _beam_size(beam_size)
    granularities = body.get("timestamp_granularities") or ["segment"]
    if isinstance(granularities, str):
        granularities = _parse_list(granularities)
    if not isinstance(granularities, (list, tuple)) or any(g not in GRANULARITIES for g in granularities):
        raise InputError("must be a list of 'segment' and/or 'word'", field="timestamp_granularities")
    request.timestamp_granularities = tuple(granularities)
    stream = body.get("stream", False)
    request.stream = stream if isinstance(stream, bool) else str(stream).lower() in ("1", "true")
    return request


def _beam_size(value: Any) -> int:
    # multipart forms send numbers as strings; JSON booleans are not numbers here
    if isinstance(value, bool) or not isinstance(value, (int, str)) or not str(value).strip().isdigit():
        raise InputError(f"must be an integer between 1 and {MAX_BEAM_SIZE}", field="beam_size")
    beam = int(value)
    if not 1 <= beam <= MAX_BEAM_SIZE:
        raise InputError(f"must be between 1 and {MAX_BEAM_SIZE}, got {beam}", field="beam_size")
    return beam


def _parse_list(text: str) -> list:
    try:
        value = json.loads(text)
        return value if isinstance(value, list) else [value]
    except json.JSONDecodeError:
        return [part.strip() for part in text.split(",") if part.strip()]
