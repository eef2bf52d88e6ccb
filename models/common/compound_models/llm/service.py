"""OpenAI chat completions on top of a ChatBackend: validate, generate, shape, stream.

Used by the Truss's `predict` and `chat_completions` alike (same body, same answers).
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import AsyncIterator, Awaitable, Callable, Optional

from compound_models.errors import InputError
from compound_models.llm import schema, sse
from compound_models.llm.backend import (
    ChatBackend, Finished, GenerationRequest, LLMSettings, TextDelta, make_backend,
)

log = logging.getLogger(__name__)

# Prompts longer than this are tokenized off the event loop.
_LONG_PROMPT_CHARS = 2000


async def _wait_disconnected(is_disconnected: Callable[[], Awaitable[bool]], poll_s: float = 0.25) -> None:
    while not await is_disconnected():
        await asyncio.sleep(poll_s)


class ChatService:
    def __init__(self, backend: ChatBackend, settings: LLMSettings):
        self.backend = backend
        self.settings = settings

    @classmethod
    def from_config(cls, config: Optional[dict], secrets: Optional[dict] = None) -> "ChatService":
        settings = LLMSettings.from_config(config)
        backend = make_backend(settings, secrets=secrets)
        backend.load()
        return cls(backend, settings)

    # --- request -> generation request ----------------------------------------------

    async def prepare(self, body) -> tuple[schema.ChatRequest, GenerationRequest, int]:
        """Validate `body` and size it against the context window (InputError → 400)."""
        req = schema.parse_request(body)
        messages = [m.normalized() for m in req.messages]
        if sum(len(m["content"]) for m in messages) > _LONG_PROMPT_CHARS:
            prompt_tokens = await asyncio.to_thread(self.backend.count_prompt_tokens, messages)
        else:
            prompt_tokens = self.backend.count_prompt_tokens(messages)
        window = self.backend.context_window
        if prompt_tokens >= window:
            raise InputError(
                f"the prompt is {prompt_tokens} tokens after the chat template; the context "
                f"window is {window} tokens (shorten the messages)", field="messages")
        room = window - prompt_tokens
        requested = req.requested_max_tokens
        if requested is not None and requested > room:
            field = "max_completion_tokens" if req.max_completion_tokens else "max_tokens"
            raise InputError(
                f"{requested} completion tokens requested but the prompt ({prompt_tokens} tokens) "
                f"leaves {room} of the {window}-token context window", field=field)
        max_tokens = requested or min(self.settings.default_max_tokens, room)
        gen = GenerationRequest(messages=messages, max_tokens=max_tokens,
                                temperature=req.temperature, top_p=req.top_p,
                                stop=list(req.stop or []), seed=req.seed)
        return req, gen, prompt_tokens

    # --- responses ----------------------------------------------------------------------

    async def complete(self, gen: GenerationRequest) -> dict:
        parts: list[str] = []
        finished: Optional[Finished] = None
        stream = self.backend.stream(gen)
        try:
            async for event in stream:
                if isinstance(event, TextDelta):
                    parts.append(event.text)
                else:
                    finished = event
        finally:
            await stream.aclose()
        assert finished is not None, "backend ended without a Finished event"
        return schema.completion(schema.completion_id(), self.settings.served_model_name,
                                 "".join(parts), finished.finish_reason,
                                 finished.prompt_tokens, finished.completion_tokens)

    async def sse_events(self, req: schema.ChatRequest, gen: GenerationRequest) -> AsyncIterator[str]:
        """OpenAI chunk stream. Closing this generator (client gone) closes the backend
        stream, which stops generation and frees the model."""
        cid, model, created = schema.completion_id(), self.settings.served_model_name, int(time.time())
        with_usage = req.include_usage
        stream = self.backend.stream(gen)
        try:
            yield sse.event(schema.chunk(cid, model, created, {"role": "assistant", "content": ""},
                                         with_usage_field=with_usage))
            async for event in stream:
                if isinstance(event, TextDelta):
                    yield sse.event(schema.chunk(cid, model, created, {"content": event.text},
                                                 with_usage_field=with_usage))
                else:
                    yield sse.event(schema.chunk(cid, model, created, {}, event.finish_reason,
                                                 with_usage_field=with_usage))
                    if with_usage:
                        yield sse.event(schema.usage_chunk(cid, model, created, event.prompt_tokens,
                                                           event.completion_tokens))
            yield sse.DONE
        except Exception as exc:  # headers are sent: report in-band, as OpenAI does
            log.exception("generation failed mid-stream")
            yield sse.event({"error": {"message": f"generation failed: {exc}", "type": "server_error"}})
        finally:
            # Also reached through GeneratorExit / CancelledError when the client leaves.
            with contextlib.suppress(Exception):
                await stream.aclose()

    async def complete_unless_disconnected(self, gen: GenerationRequest,
                                           is_disconnected: Callable[[], Awaitable[bool]]) -> dict:
        """`complete`, cancelled (model freed) if the client goes away meanwhile: the
        server would otherwise finish a generation nobody reads."""
        task = asyncio.ensure_future(self.complete(gen))
        watcher = asyncio.ensure_future(_wait_disconnected(is_disconnected))
        try:
            await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            watcher.cancel()
        if task.done():
            return task.result()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        raise InputError("client disconnected", status_code=499)

    async def respond(self, body, force_stream: Optional[bool] = None,
                      is_disconnected: Optional[Callable[[], Awaitable[bool]]] = None):
        """The response for one request: a dict, or a StreamingResponse of SSE chunks."""
        req, gen, _ = await self.prepare(body)
        stream = req.stream if force_stream is None else force_stream
        if not stream:
            if is_disconnected is None:
                return await self.complete(gen)
            return await self.complete_unless_disconnected(gen, is_disconnected)
        from fastapi.responses import StreamingResponse

        return StreamingResponse(self.sse_events(req, gen), media_type=sse.MEDIA_TYPE,
                                 headers=sse.HEADERS)
