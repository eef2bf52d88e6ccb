"""Typed settings of the json Truss, read from config.yaml `model_metadata` (env overrides win)."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Mapping

BACKENDS = ("llguidance", "outlines_core")


@dataclass(frozen=True)
class Limits:
    max_schema_bytes: int = 32_768
    max_schema_depth: int = 24
    max_schema_nodes: int = 2_000


@dataclass(frozen=True)
class Settings:
    backend: str = "llguidance"
    engine: str = "llama_cpp"  # "llama_cpp" runs here; "transformers" is the GPU path (config only)
    n_ctx: int = 2048
    n_threads: int = 2
    max_tokens_default: int = 256
    max_tokens_limit: int = 1024
    cache_size: int = 256
    compile_timeout_s: float = 10.0
    compile_workers: int = 2
    limits: Limits = field(default_factory=Limits)
    schemas: Mapping[str, Any] = field(default_factory=dict)
    system_prompts: Mapping[str, str] = field(default_factory=dict)
    gpu: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_metadata(cls, meta: Mapping[str, Any] | None) -> "Settings":
        meta = dict(meta or {})
        backend = os.environ.get("COMPOUND_JSON_BACKEND", meta.get("backend", cls.backend))
        if backend not in BACKENDS:
            raise ValueError(f"model_metadata.backend must be one of {BACKENDS}, got {backend!r}")
        limits = Limits(**(meta.get("limits") or {}))
        simple = {k: meta[k] for k in (
            "engine", "n_ctx", "n_threads", "max_tokens_default", "max_tokens_limit",
            "cache_size", "compile_timeout_s", "compile_workers") if k in meta}
        if "COMPOUND_JSON_N_THREADS" in os.environ:
            simple["n_threads"] = int(os.environ["COMPOUND_JSON_N_THREADS"])
        return cls(backend=backend, limits=limits, schemas=dict(meta.get("schemas") or {}),
                   system_prompts=dict(meta.get("system_prompts") or {}),
                   gpu=dict(meta.get("gpu") or {}), **simple)
