"""The chain service as a Truss: run one built-in chain per predict, synchronously.

    {"chain": "extract", "input": {"text": "Table for two at 8, name Bob"}}
    -> {"status": "succeeded", "outputs": {...}, "trace": [...], "error": null}

`"stream": true` with the voice chain streams the reply audio (bytes as the tts node makes them).
Node URLs: model_metadata.node_urls < secret compound_node_url_<node> < env COMPOUND_NODE_URL_<NODE>.
"""
from __future__ import annotations

import os
from typing import Any, Optional

from fastapi import HTTPException
from fastapi.responses import StreamingResponse

NODES = ("llm", "whisper", "json", "tts")


def _error(status: int, message: str, **extra) -> HTTPException:
    return HTTPException(status_code=status, detail={"error": message, **extra})


class Model:
    def __init__(self, **kwargs):
        self._config = kwargs.get("config") or {}
        self._secrets = kwargs.get("secrets") or {}
        self._endpoints = None
        self._http = None

    def load(self):
        from compound.service.endpoints import NodeEndpoints

        meta = self._config.get("model_metadata") or {}
        urls = {k: v for k, v in (meta.get("node_urls") or {}).items() if v}
        for node in NODES:
            secret = self._secret(f"compound_node_url_{node}")
            if secret:
                urls[node] = secret
            env = os.environ.get(f"COMPOUND_NODE_URL_{node.upper()}")
            if env:
                urls[node] = env
        self._endpoints = NodeEndpoints.from_env(
            port_base=int(os.environ.get("COMPOUND_PORT_BASE", meta.get("port_base", 8100))),
            urls=urls,
            api_key=self._secret("baseten_api_key") or os.environ.get("BASETEN_API_KEY") or None,
        )

    def _secret(self, name: str) -> Optional[str]:
        try:
            value = self._secrets[name]
        except Exception:  # Truss's SecretsResolver raises for secrets it does not know
            return None
        return value or None

    async def predict(self, model_input: Any):
        from compound.service.chains import UnknownChain, get_chain
        from compound.service.clients import new_http_client
        from compound.service.executor import (ChainFailed, ChainInputError, InMemoryJournal,
                                               RunContext, run_chain, stream_chain)

        if not isinstance(model_input, dict):
            raise _error(400, 'body must be a JSON object {"chain": name, "input": {...}}')
        unknown = set(model_input) - {"chain", "input", "stream"}
        if unknown:
            raise _error(400, f"unknown field(s) {sorted(unknown)}; allowed: chain, input, stream")
        name = model_input.get("chain")
        if not isinstance(name, str):
            raise _error(400, "'chain' (string) is required", field="chain")
        try:
            chain = get_chain(name)
        except UnknownChain as exc:
            raise _error(404, str(exc), field="chain") from None
        inputs = model_input.get("input")
        if not isinstance(inputs, dict):
            raise _error(400, "'input' must be an object", field="input")
        if self._http is None:  # created on the server's loop, shared by all requests
            self._http = new_http_client()
        ctx = RunContext(endpoints=self._endpoints, http=self._http)

        if model_input.get("stream"):
            if chain.stream_node is None:
                raise _error(400, f"chain {name!r} cannot stream", field="stream")
            chunks = stream_chain(chain, inputs, ctx)
            try:  # errors surface before the first byte, while a status code can still say so
                first = await anext(chunks)
            except ChainInputError as exc:
                raise _error(422, str(exc), field="input") from None
            except ChainFailed as exc:
                raise _error(502, exc.result.error, failed_step=exc.result.failed_step) from None

            async def body():
                yield first
                async for chunk in chunks:
                    yield chunk

            return StreamingResponse(body(), media_type="application/octet-stream")

        try:
            result = await run_chain(chain, inputs, InMemoryJournal(ctx.registry), ctx)
        except ChainInputError as exc:
            raise _error(422, str(exc), field="input") from None
        if result.status != "succeeded":
            # A model node failed after its retries: a bad gateway, with the per-node error.
            raise _error(502, result.error, failed_step=result.failed_step,
                         trace=[r.to_dict() for r in result.trace])
        return result.to_dict()
