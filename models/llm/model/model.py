"""LLM Truss: OpenAI-compatible chat completions (TensorRT-LLM on GPU, llama.cpp on CPU).

Thin: everything lives in `compound_models.llm` (bundled via external_package_dirs).
`predict` and `chat_completions` (POST /v1/chat/completions) take the same OpenAI body.
"""
# No `from __future__ import annotations`: Truss inspects the `request: Request`
# annotation at runtime and needs the class, not a string.
from typing import Optional

from fastapi import Request

from compound_models.errors import client_errors
from compound_models.json_body import read_json_body
from compound_models.llm.service import ChatService


class Model:
    def __init__(self, **kwargs):
        self._config = kwargs.get("config") or {}
        self._secrets = kwargs.get("secrets")
        self._service: Optional[ChatService] = None

    def load(self) -> None:
        self._service = ChatService.from_config(self._config, secrets=self._secrets)

    # Both take only the request: we parse the body ourselves so any malformed body
    # (deep nesting, invalid UTF-8, lone surrogates) is a 400, where Truss's parser 500s.
    async def predict(self, request: Request):
        return await self._respond(request)

    async def chat_completions(self, request: Request):
        return await self._respond(request)

    async def _respond(self, request: Request):
        with client_errors():
            body = await read_json_body(request)
            return await self._service.respond(body, is_disconnected=request.is_disconnected)
