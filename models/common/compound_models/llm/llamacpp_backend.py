"""CPU backend: a GGUF model through llama.cpp (llama-cpp-python).

A llama.cpp context is not thread-safe, so every generation runs on ONE dedicated worker
thread; its executor queue is the FIFO that orders concurrent requests fairly (first
come, first served; no request can starve). Tokens travel to the event loop through an
asyncio queue. A consumer that goes away (client disconnected) sets the request's cancel
event; the worker sees it at the next token, stops decoding and takes the next request.

The prompt is made by the GGUF's own `tokenizer.chat_template` through llama-cpp-python's
Jinja2ChatFormatter, installed explicitly as the chat handler so no built-in format
(which llama-cpp-python may guess from the template) is substituted for it.
"""
from __future__ import annotations

import asyncio
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import AsyncIterator, Callable, Optional

from compound_models.llm import metrics
from compound_models.llm.backend import (
    ChatBackend, Event, Finished, GenerationRequest, LLMSettings, TextDelta,
)
from compound_models.llm.chat_template import chat_prompt_tokens, gguf_chat_formatter
from compound_models.llm.weights import resolve_gguf

log = logging.getLogger(__name__)

# OpenAI semantics: temperature and top_p only. llama-cpp-python defaults to top_k=40,
# min_p=0.05, which OpenAI clients do not expect; the benchmark reference uses the same.
SAMPLING_DEFAULTS = {"top_k": 0, "min_p": 0.0, "repeat_penalty": 1.0}


_OUTCOME_LABEL = {"completed": "completed", "cancelled_running": "cancelled", "errors": "error"}


class _Job:
    __slots__ = ("request", "cancel", "emit", "completion_tokens")

    def __init__(self, request: GenerationRequest, emit: Callable[[object], None]):
        self.request = request
        self.cancel = threading.Event()
        self.emit = emit
        self.completion_tokens = 0


def _counting_llama_class():
    import llama_cpp

    class CountingLlama(llama_cpp.Llama):
        """Llama whose token loop reports each sampled token to `token_hook`; the hook
        returning False ends generation right there (cancelled request)."""

        token_hook: Optional[Callable[[int], bool]] = None

        def generate(self, *args, **kwargs):
            for token in super().generate(*args, **kwargs):
                hook = self.token_hook
                if hook is not None and not hook(token):
                    return
                yield token

    return CountingLlama


class LlamaCppBackend(ChatBackend):
    name = "llamacpp"

    def __init__(self, settings: LLMSettings, secrets: Optional[dict] = None):
        self.settings = settings
        self._secrets = secrets
        self.llm = None
        self.formatter = None
        self.model_path = None
        # One thread = the llama.cpp context's only user; its queue is the FIFO.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="llamacpp")
        self._counts_lock = threading.Lock()
        self._counts = {"submitted": 0, "started": 0, "completed": 0, "errors": 0,
                        "cancelled_queued": 0, "cancelled_running": 0, "active": 0}

    # --- loading ---------------------------------------------------------------------

    def load(self) -> None:
        import llama_cpp

        self.model_path = resolve_gguf(self.settings.weights, self._secrets)
        llm = _counting_llama_class()(
            model_path=str(self.model_path),
            n_ctx=self.settings.n_ctx,
            n_threads=self.settings.n_threads,
            n_threads_batch=self.settings.n_threads,
            verbose=False,
        )
        # Same construction llama-cpp-python uses for the GGUF template (Llama.__init__).
        self.formatter = gguf_chat_formatter(llm)
        llm.chat_handler = self.formatter.to_chat_handler()
        llm.token_hook = self._on_token
        self._is_eog = lambda tok: llama_cpp.llama_vocab_is_eog(llm._model.vocab, tok)
        self.llm = llm
        self._current: Optional[_Job] = None
        # First decode allocates compute buffers (~0.5 s); pay it before readiness.
        self._executor.submit(
            llm.create_chat_completion,
            messages=[{"role": "user", "content": "Hi"}], max_tokens=1, temperature=0.0,
        ).result()
        log.info("llama.cpp backend loaded %s (n_ctx=%d, n_threads=%d)",
                 self.model_path, llm.n_ctx(), self.settings.n_threads)

    @property
    def context_window(self) -> int:
        return self.llm.n_ctx()

    def render_prompt(self, messages: list) -> str:
        return self.formatter(messages=messages).prompt

    def count_prompt_tokens(self, messages: list) -> int:
        # Exactly how the chat handler tokenizes the rendered prompt. Tokenizing reads only
        # the vocab, so it is safe beside the decoding thread.
        return len(chat_prompt_tokens(self.llm, self.formatter, messages))

    # --- generation --------------------------------------------------------------------

    def _on_token(self, token: int) -> bool:
        job = self._current
        if job is None:  # warm-up or direct use of self.llm
            return True
        if job.cancel.is_set():
            return False
        if not self._is_eog(token):
            job.completion_tokens += 1
        return True

    def _count(self, key: str, delta: int = 1) -> None:
        with self._counts_lock:
            self._counts[key] += delta

    def _run(self, job: _Job) -> None:
        """On the worker thread: decode one request, emitting events to its consumer."""
        metrics.WAITING.dec()
        if job.cancel.is_set():  # client left while queued: never touch the model
            self._count("cancelled_queued")
            metrics.REQUESTS.labels("cancelled").inc()
            return
        self._count("started")
        self._count("active")
        metrics.ACTIVE.inc()
        self._current = job
        outcome, final = "completed", None
        req = job.request
        try:
            prompt_tokens = self.count_prompt_tokens(req.messages)
            if req.seed is not None:
                # Reusing the KV cache of a shared prompt prefix changes the logits in
                # the last bits (other batch shapes), so sampling would differ between
                # identical seeded requests. A seed asks for reproducibility: evaluate
                # the whole prompt afresh.
                self.llm.reset()
            chunks = self.llm.create_chat_completion(
                messages=req.messages, max_tokens=req.max_tokens, temperature=req.temperature,
                top_p=req.top_p, stop=req.stop or None, seed=req.seed, stream=True,
                **SAMPLING_DEFAULTS,
            )
            finish_reason = "length"
            for chunk in chunks:
                if job.cancel.is_set():
                    chunks.close()
                    break
                choice = chunk["choices"][0]
                text = choice["delta"].get("content")
                if text:
                    job.emit(TextDelta(text))
                if choice.get("finish_reason"):
                    finish_reason = choice["finish_reason"]
            if job.cancel.is_set():
                outcome = "cancelled_running"
            else:
                final = Finished(finish_reason, prompt_tokens, job.completion_tokens)
        except Exception as exc:  # reported to the consumer; the worker lives on
            outcome, final = "errors", exc
            log.exception("llama.cpp generation failed")
        finally:
            self._current = None
            metrics.TOKENS.inc(job.completion_tokens)
            metrics.ACTIVE.dec()
            metrics.REQUESTS.labels(_OUTCOME_LABEL[outcome]).inc()
            self._count("active", -1)
            self._count(outcome)
        # Last, so a consumer that saw Finished sees the model already free.
        if final is not None:
            job.emit(final)

    async def stream(self, request: GenerationRequest) -> AsyncIterator[Event]:
        loop = asyncio.get_running_loop()
        events: asyncio.Queue = asyncio.Queue()

        def emit(item) -> None:
            loop.call_soon_threadsafe(events.put_nowait, item)

        job = _Job(request, emit)
        self._count("submitted")
        metrics.WAITING.inc()
        self._executor.submit(self._run, job)
        try:
            while True:
                item = await events.get()
                if isinstance(item, BaseException):
                    raise item
                yield item
                if isinstance(item, Finished):
                    return
        finally:
            # Runs on normal end, on error, on cancellation (client gone) and when the
            # consumer closes us early: the worker stops at the next token.
            job.cancel.set()

    def stats(self) -> dict:
        """Counters of this backend instance (the Prometheus ones are process-wide)."""
        with self._counts_lock:
            counts = dict(self._counts)
        counts["cancelled"] = counts["cancelled_queued"] + counts["cancelled_running"]
        counts["waiting"] = counts["submitted"] - counts["started"] - counts["cancelled_queued"]
        return counts

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
