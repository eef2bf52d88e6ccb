"""The predict body, validated like OpenAI's `/v1/audio/speech` request.

    {"input": "...", "voice"?: "joe", "response_format"?: "wav", "speed"?: 1.0, "stream"?: false,
     "noise_scale"?: 0.667, "noise_w_scale"?: 0.8, "speaker"?: "name" | 3}

`noise_scale` / `noise_w_scale` are Piper's own sampling knobs (voice timbre noise and
phoneme-duration noise; default: the voice's `.onnx.json`). 0 for both makes synthesis
deterministic: the same text gives the same samples, which is what golden-audio tests want.

Every problem is an InputError naming the field (a 400 through `client_errors`).
`model` is accepted and ignored, so OpenAI-shaped bodies work unchanged; any other
unknown field is rejected so a typo ("sped") is not silently dropped.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Optional

from compound_models.errors import InputError
from compound_models.tts.encode import FORMATS
from compound_models.tts.synth import MAX_SPEED, MIN_SPEED

FIELDS = ("input", "voice", "response_format", "speed", "stream", "noise_scale", "noise_w_scale",
          "speaker")
MAX_NOISE_SCALE = 2.0
IGNORED_FIELDS = ("model",)


@dataclass(frozen=True)
class SpeechRequest:
    input: str
    voice: Optional[str]  # None: the default voice
    response_format: str
    speed: float
    stream: bool
    noise_scale: Optional[float] = None  # None: the voice's own default
    noise_w_scale: Optional[float] = None
    speaker: Optional[str | int] = None  # multi-speaker voices: a name or an id (voices.py checks it)


def parse_speech_request(body: Any, max_input_chars: int, default_format: str = "wav") -> SpeechRequest:
    if not isinstance(body, dict):
        raise InputError(f"request body must be a JSON object with an 'input' field, got {type(body).__name__}")
    unknown = sorted(set(body) - set(FIELDS) - set(IGNORED_FIELDS))
    if unknown:
        raise InputError(f"unknown field(s) {', '.join(map(repr, unknown))}; allowed: {', '.join(FIELDS)}",
                         field=unknown[0])

    text = body.get("input")
    if not isinstance(text, str):
        raise InputError("'input' is required and must be a string", field="input")
    if not text.strip():
        raise InputError("'input' is empty", field="input")
    if len(text) > max_input_chars:
        raise InputError(f"'input' has {len(text)} characters; the limit is {max_input_chars}", field="input")

    voice = body.get("voice")
    if voice is not None and not isinstance(voice, str):
        raise InputError("'voice' must be a string", field="voice")

    fmt = body.get("response_format", default_format)
    if not isinstance(fmt, str) or fmt.lower() not in FORMATS:
        raise InputError(f"unsupported response_format {fmt!r}; supported: {', '.join(FORMATS)}",
                         field="response_format")

    speed = _finite(body.get("speed", 1.0))
    if speed is None:
        raise InputError(f"'speed' must be a number between {MIN_SPEED} and {MAX_SPEED}", field="speed")
    if not MIN_SPEED <= speed <= MAX_SPEED:
        raise InputError(f"'speed' {speed} is out of range [{MIN_SPEED}, {MAX_SPEED}]", field="speed")

    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise InputError("'stream' must be true or false", field="stream")

    noise = {name: _noise(body, name) for name in ("noise_scale", "noise_w_scale")}
    speaker = body.get("speaker")
    if speaker is not None and (isinstance(speaker, bool) or not isinstance(speaker, (str, int))):
        raise InputError("'speaker' must be a speaker name or a non-negative integer id", field="speaker")
    return SpeechRequest(text, voice, fmt.lower(), float(speed), stream, speaker=speaker, **noise)


def _finite(value: Any) -> Optional[float]:
    """`value` as a float when it is a finite JSON number (not a bool), else None. A huge JSON
    integer (10**400) is not representable: None, not an OverflowError (a 500)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def _noise(body: dict, name: str) -> Optional[float]:
    if body.get(name) is None:
        return None
    value = _finite(body[name])
    if value is None:
        raise InputError(f"'{name}' must be a number between 0 and {MAX_NOISE_SCALE}", field=name)
    if not 0 <= value <= MAX_NOISE_SCALE:
        raise InputError(f"'{name}' {value} is out of range [0, {MAX_NOISE_SCALE}]", field=name)
    return float(value)
