"""GPU backend: a TensorRT-LLM engine through TensorRT-LLM's LLM API.

The engine must have been built for the GPU it runs on (engines are not portable across
GPU architectures); `load()` checks the engine's manifest against this GPU before
loading. TensorRT-LLM batches requests in flight itself, so no queue here: each request
is one `generate_async(..., streaming=True)` and an abandoned stream is aborted, which
frees its batch slot and KV cache blocks.

The chat template is the Hugging Face tokenizer's own (`apply_chat_template`), and the
engine is fed the resulting token ids, so the prompt counted for the context-window
check is exactly the prompt generated from.

Nothing imports tensorrt_llm at module import time: CPU boxes cannot install it.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import AsyncIterator, Optional

from compound_models.llm import metrics
from compound_models.llm.backend import (
    ChatBackend, Event, Finished, GenerationRequest, LLMSettings, TextDelta,
)
from compound_models.llm.weights import _hf_token, resolve_trtllm_engine

log = logging.getLogger(__name__)


def _llm_class():
    """The LLM API class that loads prebuilt TensorRT engines.

    TensorRT-LLM >= 1.0 made `tensorrt_llm.LLM` the PyTorch-backend LLM; the TensorRT
    engine flavour of the same API moved to `tensorrt_llm._tensorrt_engine.LLM`. Older
    releases load engine dirs with `tensorrt_llm.LLM` directly.
    """
    try:
        from tensorrt_llm._tensorrt_engine import LLM
    except ImportError:
        from tensorrt_llm import LLM
    return LLM


def _engine_max_seq_len(engine_dir: Path) -> Optional[int]:
    """max_seq_len the engine was built with (engine config.json, build_config)."""
    config = engine_dir / "config.json"
    if not config.exists():
        return None
    data = json.loads(config.read_text())
    build = data.get("build_config") or {}
    value = build.get("max_seq_len") or (data.get("pretrained_config") or {}).get("max_position_embeddings")
    return int(value) if value else None


def _load_tokenizer(source: str, token: Optional[str]):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(source, token=token)


class TrtLlmBackend(ChatBackend):
    name = "trtllm"

    def __init__(self, settings: LLMSettings, secrets: Optional[dict] = None):
        self.settings = settings
        self._secrets = secrets
        self.llm = None
        self.tokenizer = None
        self.engine_dir: Optional[Path] = None
        self._context_window = settings.n_ctx

    def load(self) -> None:
        spec = self.settings.trtllm
        engine_dir = resolve_trtllm_engine(spec, self._secrets)
        # Refuse an engine built for another GPU with a message naming both GPUs and
        # the build command (the engines area owns the manifest format).
        from compound_models.engines.manifest import verify_engine_for_this_gpu

        verify_engine_for_this_gpu(engine_dir)
        token = _hf_token(self._secrets)
        self.tokenizer = _load_tokenizer(str(spec.get("tokenizer") or engine_dir), token)
        if not getattr(self.tokenizer, "chat_template", None):
            raise RuntimeError(f"tokenizer {spec.get('tokenizer') or engine_dir} has no chat_template")
        llm_kwargs = {}
        if spec.get("kv_cache_free_gpu_memory_fraction"):
            from tensorrt_llm.llmapi import KvCacheConfig

            llm_kwargs["kv_cache_config"] = KvCacheConfig(
                free_gpu_memory_fraction=float(spec["kv_cache_free_gpu_memory_fraction"]))
        self.llm = _llm_class()(model=str(engine_dir), tokenizer=self.tokenizer, **llm_kwargs)
        self.engine_dir = engine_dir
        self._context_window = _engine_max_seq_len(engine_dir) or self.settings.n_ctx
        log.info("TensorRT-LLM backend loaded %s (context %d)", engine_dir, self._context_window)

    @property
    def context_window(self) -> int:
        return self._context_window

    def render_prompt(self, messages: list) -> str:
        return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    def _prompt_ids(self, messages: list) -> list:
        # Tokenize the rendered text without adding specials again: the template
        # already holds BOS etc. where the model wants them.
        return list(self.tokenizer.encode(self.render_prompt(messages), add_special_tokens=False))

    def count_prompt_tokens(self, messages: list) -> int:
        return len(self._prompt_ids(messages))

    def _sampling_params(self, req: GenerationRequest):
        from tensorrt_llm import SamplingParams

        kwargs = dict(max_tokens=req.max_tokens, top_p=req.top_p, stop=req.stop or None)
        if req.temperature == 0.0:
            kwargs.update(top_k=1, top_p=None)  # greedy, as OpenAI's temperature 0
        else:
            kwargs["temperature"] = req.temperature
        if req.seed is not None:
            kwargs["seed"] = req.seed
        return SamplingParams(**kwargs)

    async def stream(self, request: GenerationRequest) -> AsyncIterator[Event]:
        prompt_ids = self._prompt_ids(request.messages)
        result = self.llm.generate_async(prompt_ids, sampling_params=self._sampling_params(request),
                                         streaming=True)
        metrics.ACTIVE.inc()
        completion_tokens, finish_reason, outcome = 0, None, "cancelled"
        try:
            async for output in result:
                out = output.outputs[0]
                text = out.text_diff
                completion_tokens = len(out.token_ids)
                if text:
                    yield TextDelta(text)
                if out.finish_reason:
                    finish_reason = out.finish_reason
            outcome = "completed"
            yield Finished("stop" if finish_reason == "stop" else "length", len(prompt_ids), completion_tokens)
        except Exception:
            outcome = "error"
            raise
        finally:
            if not getattr(result, "finished", True):
                # Client gone (or error): free the batch slot and its KV cache now.
                result.abort()
            metrics.ACTIVE.dec()
            metrics.TOKENS.inc(completion_tokens)
            metrics.REQUESTS.labels(outcome).inc()
