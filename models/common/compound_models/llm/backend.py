"""The interface every LLM backend implements, its settings, and backend selection."""
from __future__ import annotations

import abc
import importlib.util
import os
import shutil
from dataclasses import dataclass, field
from typing import AsyncIterator, Optional, Union

BACKENDS = ("auto", "llamacpp", "trtllm")
BACKEND_ENV = "COMPOUND_LLM_BACKEND"


@dataclass(frozen=True)
class LLMSettings:
    """`model_metadata` of the LLM Truss's config.yaml (env vars override a few)."""

    backend: str = "auto"
    served_model_name: str = "smollm2-135m-instruct"
    n_threads: int = 2
    n_ctx: int = 4096
    default_max_tokens: int = 512
    # Where weights come from; None = the bundled SmolLM2 GGUF (no network). See weights.py.
    weights: Optional[dict] = None
    # TensorRT-LLM: {"engine_dir": ...} or {"engine_repo": ..., "revision": ..., "tokenizer": ...}
    trtllm: dict = field(default_factory=dict)

    @classmethod
    def from_config(cls, config: Optional[dict]) -> "LLMSettings":
        meta = dict((config or {}).get("model_metadata") or {})
        backend = os.environ.get(BACKEND_ENV) or meta.get("backend") or "auto"
        if backend not in BACKENDS:
            raise ValueError(f"LLM backend {backend!r} is not one of {BACKENDS} "
                             f"(model_metadata.backend or ${BACKEND_ENV})")
        n_threads = int(os.environ.get("COMPOUND_LLM_THREADS") or meta.get("n_threads") or 2)
        return cls(
            backend=backend,
            served_model_name=meta.get("served_model_name") or cls.served_model_name,
            n_threads=n_threads,
            n_ctx=int(meta.get("n_ctx") or cls.n_ctx),
            default_max_tokens=int(meta.get("default_max_tokens") or cls.default_max_tokens),
            weights=meta.get("weights") or None,
            trtllm=dict(meta.get("trtllm") or {}),
        )


@dataclass(frozen=True)
class GenerationRequest:
    messages: list  # [{"role": ..., "content": str}], roles already normalized
    max_tokens: int
    temperature: float
    top_p: float
    stop: list
    seed: Optional[int]


@dataclass(frozen=True)
class TextDelta:
    text: str


@dataclass(frozen=True)
class Finished:
    finish_reason: str  # "stop" | "length"
    prompt_tokens: int
    completion_tokens: int


Event = Union[TextDelta, Finished]


class ChatBackend(abc.ABC):
    """One loaded model. `stream` is an async generator: closing it early (client gone)
    must stop generation and free the model for the next request."""

    name: str

    @abc.abstractmethod
    def load(self) -> None: ...

    @property
    @abc.abstractmethod
    def context_window(self) -> int: ...

    @abc.abstractmethod
    def render_prompt(self, messages: list) -> str:
        """The prompt text the model's own chat template makes of `messages`."""

    @abc.abstractmethod
    def count_prompt_tokens(self, messages: list) -> int: ...

    @abc.abstractmethod
    def stream(self, request: GenerationRequest) -> AsyncIterator[Event]:
        """Yield TextDelta events, then exactly one Finished."""

    def stats(self) -> dict:
        return {}


def gpu_available() -> bool:
    """A CUDA GPU is visible (nvidia-smi present or CUDA_VISIBLE_DEVICES naming devices)."""
    if os.environ.get("CUDA_VISIBLE_DEVICES", None) in ("", "-1"):
        return False
    return shutil.which("nvidia-smi") is not None or os.path.exists("/dev/nvidia0")


def resolve_backend_name(settings: LLMSettings) -> str:
    if settings.backend != "auto":
        return settings.backend
    has_trtllm = importlib.util.find_spec("tensorrt_llm") is not None
    return "trtllm" if gpu_available() and has_trtllm else "llamacpp"


def make_backend(settings: LLMSettings, secrets: Optional[dict] = None) -> ChatBackend:
    name = resolve_backend_name(settings)
    if name == "trtllm":
        from compound_models.llm.trtllm_backend import TrtLlmBackend

        return TrtLlmBackend(settings, secrets=secrets)
    from compound_models.llm.llamacpp_backend import LlamaCppBackend

    return LlamaCppBackend(settings, secrets=secrets)
