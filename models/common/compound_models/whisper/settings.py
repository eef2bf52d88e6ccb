"""Whisper Truss settings: `model_metadata` of config.yaml, overridable by env vars.

Env overrides (`COMPOUND_WHISPER_<KEY>` upper-cased, e.g. COMPOUND_WHISPER_BACKEND) let the
same Truss run the bundled tiny.en on a laptop and large-v3-turbo on a GPU deployment.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, fields
from typing import Any, Mapping, Optional

# Production weights (CTranslate2 conversion of Whisper large-v3 turbo on the Hugging Face Hub).
PRODUCTION_MODEL = "hf:deepdml/faster-whisper-large-v3-turbo-ct2"
BUNDLED_MODEL = "bundled:tiny.en"


@dataclass(frozen=True)
class WhisperSettings:
    backend: str = "faster-whisper"  # or "openai-whisper" (reference implementation)
    # "bundled:tiny.en" | "hf:<repo>[@revision]" | a local model dir / openai-whisper name or .pt
    model: str = BUNDLED_MODEL
    device: str = "cpu"
    compute_type: str = "int8"
    cpu_threads: int = 2  # total threads; split across `workers`
    workers: int = 2  # chunks transcribed at once (threads over one model)
    strategy: str = "threads"  # "threads" | "batched" (BatchedInferencePipeline) | "sequential"
    batch_size: int = 8  # for strategy "batched"
    # Beam 5 (faster-whisper's default). Greedy is ~30 % faster and scores the same WER on the
    # 10-min bench set, but on tests/test_whisper.py's 190 s recording it dropped a whole
    # sentence run inside one segment; a request may still ask for `beam_size: 1`.
    beam_size: int = 5
    chunk_seconds: float = 30.0
    min_silence_ms: int = 300  # a pause this long separates speech regions
    # Limits; over them is a 413 naming the limit.
    max_audio_seconds: float = 4 * 3600
    max_upload_bytes: int = 200 * 1024 * 1024
    # URL inputs
    allow_private_urls: bool = False
    url_allowed_hosts: tuple = ()  # host names exempt from the private-address check
    url_timeout_s: float = 60.0
    url_max_redirects: int = 5
    hf_cache_dir: Optional[str] = None

    @classmethod
    def from_config(cls, config: Optional[Mapping[str, Any]] = None,
                    environ: Optional[Mapping[str, str]] = None) -> "WhisperSettings":
        metadata = dict(((config or {}).get("model_metadata") or {}))
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = environ.get(f"COMPOUND_WHISPER_{f.name.upper()}", metadata.get(f.name))
            if raw is None:
                continue
            values[f.name] = _coerce(raw, type(getattr(cls(), f.name)) if f.name != "hf_cache_dir" else str)
        settings = cls(**values)
        if settings.backend not in ("faster-whisper", "openai-whisper"):
            raise ValueError(f"unknown whisper backend {settings.backend!r}")
        if settings.strategy not in ("threads", "batched", "sequential"):
            raise ValueError(f"unknown whisper strategy {settings.strategy!r}")
        if not 1 <= settings.chunk_seconds <= 30:
            raise ValueError("chunk_seconds must be within 1..30 (Whisper's window is 30 s)")
        return settings


def _coerce(raw: Any, kind: type) -> Any:
    if kind is tuple:
        items = raw.split(",") if isinstance(raw, str) else raw
        return tuple(str(i).strip().lower() for i in items if str(i).strip())
    if kind is bool and isinstance(raw, str):
        return raw.strip().lower() in ("1", "true", "yes", "on")
    return kind(raw)
