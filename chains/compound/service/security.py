"""API-key auth and the request size limit."""
from __future__ import annotations

import hmac
import json
from typing import Optional

from fastapi import HTTPException, Request


class ApiKeyAuth:
    """FastAPI dependency: `Authorization: Bearer KEY` or `X-API-Key: KEY`, compared in
    constant time. With no key configured (dev) every request passes."""

    def __init__(self, api_key: Optional[str]):
        self._key = api_key.encode() if api_key else None

    async def __call__(self, request: Request) -> None:
        if self._key is None:
            return
        offered = request.headers.get("x-api-key")
        if offered is None:
            auth = request.headers.get("authorization", "")
            scheme, _, value = auth.partition(" ")
            if scheme.lower() in ("bearer", "api-key"):
                offered = value.strip()
        if not offered or not hmac.compare_digest(offered.encode(), self._key):
            raise HTTPException(
                status_code=401,
                detail={"error": "missing or invalid API key (send 'Authorization: Bearer <COMPOUND_API_KEY>' "
                                 "or 'X-API-Key')", "field": "Authorization"},
                headers={"WWW-Authenticate": "Bearer"})


class _TooLarge(HTTPException):
    """An HTTPException so that FastAPI's body parsing re-raises it as is (413, not 400)."""

    def __init__(self, max_bytes: int):
        super().__init__(status_code=413, detail=_too_large_detail(max_bytes))


def _too_large_detail(max_bytes: int) -> dict:
    return {"error": f"request body too large: limit is {max_bytes} bytes (COMPOUND_MAX_BODY_BYTES)",
            "field": "body"}


class BodySizeLimit:
    """ASGI middleware: 413 for bodies over `max_bytes`, by Content-Length up front or by
    counting chunked bodies as they stream in (never buffers more than the limit)."""

    def __init__(self, app, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def _reject(self, send) -> None:
        body = json.dumps({"detail": _too_large_detail(self.max_bytes)}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    if int(value) > self.max_bytes:
                        return await self._reject(send)
                except ValueError:
                    pass
        seen = 0
        started = False

        async def counting_receive():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise _TooLarge(self.max_bytes)
            return message

        async def tracking_send(message):
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except _TooLarge:
            if not started:
                await self._reject(send)
