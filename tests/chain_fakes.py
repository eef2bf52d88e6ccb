"""Fake model nodes for chain executor tests: real HTTP servers on free loopback ports.

A fake node stands in for a model Truss where the model's behaviour must be scripted (fail N
times, hang, answer garbage). `respond(body, n)` is called with the predict body and the call
index and returns one of: a dict/list (JSON 200), `Status(code)`, `Sleep(seconds, then)`,
`Raw(bytes, content_type)`, `Chunks([...], delay_s, gate)` (a streamed body; with a `gate`
(threading.Event) the chunks after the first wait until the test sets it). The same script
answers `POST /predict` and Baseten-style `POST /async_predict` (the result is then POSTed to
`webhook_endpoint` as `{request_id, data, errors}`).
"""
from __future__ import annotations

import asyncio
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import httpx
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse


@dataclass
class Status:
    code: int
    text: str = "fake failure"


@dataclass
class Sleep:
    seconds: float
    then: Any = field(default_factory=lambda: {"ok": True})


@dataclass
class Raw:
    content: bytes
    content_type: str = "audio/wav"


@dataclass
class Chunks:
    chunks: list
    delay_s: float = 0.0
    content_type: str = "audio/wav"
    gate: Optional[threading.Event] = None  # set by the test to let the chunks after the first go


class ServerThread:
    """uvicorn on 127.0.0.1:<free port> in a daemon thread."""

    def __init__(self, app: FastAPI):
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning",
                                                    lifespan="off", timeout_graceful_shutdown=0.2))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def start(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("fake server did not start")
            time.sleep(0.01)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=5)


class FakeNode:
    def __init__(self, respond: Optional[Callable[[dict, int], Any]] = None):
        self.respond = respond or (lambda body, n: {"ok": True, "echo": body})
        self.calls: list[dict] = []  # predict bodies, sync and async
        self.async_calls: list[dict] = []  # async_predict envelopes
        self.stream_finished = threading.Event()
        self._lock = threading.Lock()
        self._tasks: set = set()
        self.app = FastAPI()
        self.app.post("/predict")(self._predict)
        self.app.post("/async_predict")(self._async_predict)
        self._server = ServerThread(self.app)
        self.url = ""

    def __enter__(self) -> "FakeNode":
        self.url = self._server.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.stop()

    def _script(self, body: dict) -> Any:
        with self._lock:
            n = len(self.calls)
            self.calls.append(body)
        return self.respond(body, n)

    async def _resolve(self, action: Any) -> Any:
        while isinstance(action, Sleep):
            await asyncio.sleep(action.seconds)
            action = action.then
        return action

    async def _predict(self, request: Request):
        action = await self._resolve(self._script(await request.json()))
        if isinstance(action, Status):
            return Response(action.text, status_code=action.code)
        if isinstance(action, Raw):
            return Response(action.content, media_type=action.content_type)
        if isinstance(action, Chunks):
            async def gen():
                for i, chunk in enumerate(action.chunks):
                    if i:
                        if action.gate is not None:
                            await asyncio.to_thread(action.gate.wait, 30)
                        await asyncio.sleep(action.delay_s)
                    yield chunk
                self.stream_finished.set()
            return StreamingResponse(gen(), media_type=action.content_type)
        return JSONResponse(action)

    async def _async_predict(self, request: Request):
        envelope = await request.json()
        self.async_calls.append(envelope)
        request_id = uuid.uuid4().hex
        task = asyncio.ensure_future(self._complete(request_id, envelope))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return JSONResponse({"request_id": request_id}, status_code=201)

    async def _complete(self, request_id: str, envelope: dict) -> None:
        action = await self._resolve(self._script(envelope["model_input"]))
        data, errors = None, []
        if isinstance(action, Status):
            errors = [{"code": "MODEL_PREDICT_ERROR", "message": f"HTTP {action.code}: {action.text}"}]
        else:
            data = action
        body = {"request_id": request_id, "model_id": "fake", "deployment_id": "fake",
                "type": "async_request_completed", "time": "2025-01-01T00:00:00Z",
                "data": data, "errors": errors}
        async with httpx.AsyncClient() as http:
            await http.post(envelope["webhook_endpoint"], json=body)


class CallbackReceiver:
    """Stands in for the chain service's /v1/callbacks/baseten: resolves the registry."""

    def __init__(self, registry):
        self.registry = registry
        self.bodies: list[dict] = []
        app = FastAPI()

        @app.post("/cb")
        async def cb(request: Request):
            body = await request.json()
            self.bodies.append(body)
            self.registry.resolve(body["request_id"], body)
            return {"ok": True}

        self._server = ServerThread(app)
        self.url = ""

    def __enter__(self) -> "CallbackReceiver":
        self.url = self._server.start() + "/cb"
        return self

    def __exit__(self, *exc) -> None:
        self._server.stop()


def free_closed_port_url() -> str:
    """A URL nobody listens on (bound then released)."""
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"
