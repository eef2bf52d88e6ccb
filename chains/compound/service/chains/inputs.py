"""Validators shared by the built-in chains' input models."""
from __future__ import annotations

import base64
import binascii

MAX_AUDIO_BYTES = 25 * 1024 * 1024


def decode_audio_b64(value: str) -> bytes:
    """Strict base64 (a data: URL prefix is accepted); raises ValueError with the reason."""
    if value.startswith("data:") and "," in value:
        value = value.split(",", 1)[1]
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"audio is not valid base64: {exc}") from exc
    if not raw:
        raise ValueError("audio is empty")
    if len(raw) > MAX_AUDIO_BYTES:
        raise ValueError(f"audio is {len(raw)} bytes; the limit is {MAX_AUDIO_BYTES}")
    return raw


def check_audio_b64(value: str) -> str:
    decode_audio_b64(value)
    return value
