"""Baseten's async inference API, served locally in front of a Truss.

Chain code talks to `POST /async_predict`, `GET|DELETE /async_request/{id}` and receives
signed webhooks exactly as it would from Baseten, so the same code runs locally and
deployed. Shapes follow Baseten's docs: request `model_input`, `webhook_endpoint`,
`priority` (0 highest .. 2), `max_time_in_queue_seconds`, `inference_retry_config`;
webhook body `{request_id, model_id, deployment_id, type, time, data, errors}` with
`X-BASETEN-REQUEST-ID` and, when a secret is set, `X-BASETEN-SIGNATURE: v1=<hex hmac>`.

The queue lives in this server process, like a deployment's replica; durability across
processes is the chain service's job (it keeps its own record of every request).
"""
from __future__ import annotations

import asyncio
import base64
import collections
import datetime as dt
import hashlib
import hmac
import itertools
import json
import logging
import os
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Optional

import httpx
from fastapi import FastAPI, HTTPException, Request
from pydantic import BaseModel, ConfigDict, Field, HttpUrl, model_validator

log = logging.getLogger("compound.async")

WEBHOOK_SECRET_ENV = "COMPOUND_BASETEN_WEBHOOK_SECRET"
RETRYABLE_STATUS = {500, 502, 503, 504}
TERMINAL = {"SUCCEEDED", "FAILED", "EXPIRED", "CANCELED", "WEBHOOK_FAILED"}


def _env_float(name: str, default: float) -> float:
    return float(os.environ.get(name, default))


class InferenceRetryConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    max_attempts: int = Field(3, ge=1, le=10)
    initial_delay_ms: int = Field(1000, ge=0, le=10_000)
    max_delay_ms: int = Field(5000, ge=0, le=60_000)

    @model_validator(mode="after")
    def _delays_ordered(self):
        if self.max_delay_ms < self.initial_delay_ms:
            raise ValueError("max_delay_ms must be >= initial_delay_ms")
        return self


class AsyncPredictRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    model_input: Any = Field(..., description="The body the Truss's predict receives")
    webhook_endpoint: Optional[HttpUrl] = None
    priority: int = Field(1, ge=0, le=2, description="0 is served first")
    max_time_in_queue_seconds: int = Field(600, ge=10, le=259_200)
    inference_retry_config: InferenceRetryConfig = Field(default_factory=InferenceRetryConfig)

    @model_validator(mode="after")
    def _input_present(self):
        if self.model_input is None:
            raise ValueError("model_input is required and must not be null")
        return self


@dataclass
class AsyncRequest:
    request_id: str
    body: AsyncPredictRequest
    created_at: float = field(default_factory=time.time)
    status: str = "QUEUED"
    status_at: float = field(default_factory=time.time)
    webhook_status: str = "NO_WEBHOOK_PROVIDED"
    attempts: int = 0
    errors: list = field(default_factory=list)

    def set_status(self, status: str) -> None:
        self.status = status
        self.status_at = time.time()


def _iso(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.timezone.utc).isoformat()


def sign_baseten(secret: str, body: bytes) -> str:
    return "v1=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def _output_as_json(response: httpx.Response) -> Any:
    """Webhook `data` is JSON; non-JSON outputs (audio, text documents) are wrapped."""
    content_type = response.headers.get("content-type", "")
    if content_type.startswith("application/json"):
        return response.json()
    return {"content_type": content_type, "body_base64": base64.b64encode(response.content).decode()}


class AsyncInferenceQueue:
    def __init__(self, predict_url: str, model_id: str, deployment_id: str = "local",
                 workers: int = 1, max_queue: int = 1024, max_finished: int = 10_000):
        self.predict_url = predict_url
        self.model_id = model_id
        self.deployment_id = deployment_id
        self.workers = max(1, workers)
        self.max_queue = max_queue
        self.requests: dict[str, AsyncRequest] = {}  # insertion order = age
        self.max_finished = max_finished  # finished requests kept for status lookups
        self._finished_ids: collections.deque[str] = collections.deque()  # oldest first
        self._queued = 0
        self._queue: asyncio.PriorityQueue | None = None
        self._order = itertools.count()
        self._tasks: list[asyncio.Task] = []
        self._webhook_tasks: set[asyncio.Task] = set()
        self._http: httpx.AsyncClient | None = None
        # Baseten: 2 delivery attempts about 2 s apart, 10 s timeout each.
        self.webhook_attempts = int(_env_float("COMPOUND_ASYNC_WEBHOOK_ATTEMPTS", 2))
        self.webhook_retry_delay_s = _env_float("COMPOUND_ASYNC_WEBHOOK_RETRY_DELAY_S", 2.0)
        self.webhook_timeout_s = _env_float("COMPOUND_ASYNC_WEBHOOK_TIMEOUT_S", 10.0)
        self.predict_timeout_s = _env_float("COMPOUND_ASYNC_PREDICT_TIMEOUT_S", 3600.0)

    def _ensure_started(self) -> None:
        # Started lazily inside the server's event loop (Truss owns the app lifespan).
        if self._queue is None:
            self._queue = asyncio.PriorityQueue()
            self._http = httpx.AsyncClient(timeout=self.predict_timeout_s)
            self._tasks = [asyncio.create_task(self._worker(i)) for i in range(self.workers)]

    def queued_count(self) -> int:
        return self._queued

    def _finished(self, request: AsyncRequest) -> None:
        """Free a finished request's input and forget the oldest finished ones beyond the cap,
        so a long-running server's memory stays bounded."""
        request.body.model_input = {}
        self._finished_ids.append(request.request_id)
        while len(self._finished_ids) > self.max_finished:
            self.requests.pop(self._finished_ids.popleft(), None)

    def submit(self, body: AsyncPredictRequest) -> AsyncRequest:
        self._ensure_started()
        if self.queued_count() >= self.max_queue:
            raise HTTPException(429, f"async queue is full ({self.max_queue} queued requests)")
        request = AsyncRequest(request_id=uuid.uuid4().hex, body=body)
        if body.webhook_endpoint is not None:
            request.webhook_status = "PENDING"
        self.requests[request.request_id] = request
        self._queued += 1
        self._queue.put_nowait((body.priority, next(self._order), request.request_id))
        log.info("async request %s queued (priority %d)", request.request_id, body.priority)
        return request

    def get(self, request_id: str) -> AsyncRequest:
        request = self.requests.get(request_id)
        if request is None:
            raise HTTPException(404, f"no async request with id {request_id!r}")
        return request

    def cancel(self, request_id: str) -> AsyncRequest:
        request = self.get(request_id)
        if request.status != "QUEUED":
            raise HTTPException(
                409, f"request {request_id} is {request.status}; only QUEUED requests can be canceled"
            )
        request.set_status("CANCELED")
        self._queued -= 1
        return request

    def describe(self, request: AsyncRequest) -> dict:
        return {
            "request_id": request.request_id,
            "model_id": self.model_id,
            "deployment_id": self.deployment_id,
            "status": request.status,
            "webhook_status": request.webhook_status,
            "created_at": _iso(request.created_at),
            "status_at": _iso(request.status_at),
            "attempts": request.attempts,
            "errors": request.errors,
        }

    async def _worker(self, index: int) -> None:
        while True:
            _, _, request_id = await self._queue.get()
            request = self.requests[request_id]
            try:
                if request.status != "QUEUED":  # canceled while waiting
                    continue
                self._queued -= 1
                waited = time.time() - request.created_at
                if waited > request.body.max_time_in_queue_seconds:
                    request.set_status("EXPIRED")
                    request.errors = [{"code": "EXPIRED", "message":
                                       f"waited {waited:.1f}s in queue, over max_time_in_queue_seconds="
                                       f"{request.body.max_time_in_queue_seconds}"}]
                    self._deliver_later(request, data=None)
                    continue
                await self._run(request)
            except Exception as exc:  # a worker must survive anything one request does
                log.exception("async request %s crashed the worker path", request_id)
                request.set_status("FAILED")
                request.errors = [{"code": "INTERNAL", "message": repr(exc)}]
                self._deliver_later(request, data=None)
            finally:
                delivered_or_none = request.webhook_status != "PENDING" or request.status == "CANCELED"
                if request.status in TERMINAL and delivered_or_none:
                    self._finished(request)

    async def _run(self, request: AsyncRequest) -> None:
        request.set_status("IN_PROGRESS")
        retry = request.body.inference_retry_config
        delay_s = retry.initial_delay_ms / 1000
        data, errors = None, []
        for attempt in range(1, retry.max_attempts + 1):
            request.attempts = attempt
            try:
                response = await self._http.post(self.predict_url, json=request.body.model_input)
            except httpx.HTTPError as exc:
                errors = [{"code": "MODEL_UNREACHABLE", "message": f"{type(exc).__name__}: {exc}"}]
                retryable = True
            else:
                if response.status_code < 400:
                    data, errors = _output_as_json(response), []
                    break
                errors = [{"code": "MODEL_PREDICT_ERROR",
                           "message": f"HTTP {response.status_code}: {response.text[:2000]}"}]
                retryable = response.status_code in RETRYABLE_STATUS
            if not retryable or attempt == retry.max_attempts:
                break
            await asyncio.sleep(delay_s)
            delay_s = min(delay_s * 2, retry.max_delay_ms / 1000)
        request.errors = errors
        request.set_status("FAILED" if errors else "SUCCEEDED")
        log.info("async request %s %s after %d attempt(s)", request.request_id, request.status,
                 request.attempts)
        self._deliver_later(request, data=data)

    def _deliver_later(self, request: AsyncRequest, data: Any) -> None:
        if request.body.webhook_endpoint is None:
            return
        task = asyncio.create_task(self._deliver(request, data))
        task.add_done_callback(lambda _: self._finished(request))
        self._webhook_tasks.add(task)
        task.add_done_callback(self._webhook_tasks.discard)

    async def _deliver(self, request: AsyncRequest, data: Any) -> None:
        body = json.dumps({
            "request_id": request.request_id,
            "model_id": self.model_id,
            "deployment_id": self.deployment_id,
            "type": "async_request_completed",
            "time": _iso(time.time()),
            "data": data,
            "errors": request.errors,
        }).encode()
        headers = {"content-type": "application/json", "X-BASETEN-REQUEST-ID": request.request_id}
        secret = os.environ.get(WEBHOOK_SECRET_ENV)
        if secret:
            headers["X-BASETEN-SIGNATURE"] = sign_baseten(secret, body)
        url = str(request.body.webhook_endpoint)
        last_error = ""
        for attempt in range(1, self.webhook_attempts + 1):
            try:
                response = await self._http.post(url, content=body, headers=headers,
                                                 timeout=self.webhook_timeout_s)
                if response.status_code < 300:
                    request.webhook_status = "SUCCEEDED"
                    return
                last_error = f"HTTP {response.status_code}"
            except httpx.HTTPError as exc:
                last_error = f"{type(exc).__name__}: {exc}"
            if attempt < self.webhook_attempts:
                await asyncio.sleep(self.webhook_retry_delay_s)
        log.warning("webhook for %s to %s failed after %d attempts: %s",
                    request.request_id, url, self.webhook_attempts, last_error)
        request.webhook_status = "FAILED"
        request.errors = request.errors + [{"code": "WEBHOOK_FAILED", "message": last_error}]
        request.set_status("WEBHOOK_FAILED")


def max_input_bytes() -> int:
    # Baseten caps async inputs at 256 KiB; same default so what works here works there.
    return int(os.environ.get("COMPOUND_ASYNC_MAX_INPUT_BYTES", 256 * 1024))


def install_async_routes(app: FastAPI, queue: AsyncInferenceQueue) -> None:
    @app.post("/async_predict", status_code=201, tags=["async"])
    async def async_predict(request: Request):
        raw = await request.body()
        if len(raw) > max_input_bytes():
            raise HTTPException(413, f"async_predict body is {len(raw)} bytes; the limit is "
                                     f"{max_input_bytes()} bytes (pass large inputs by URL)")
        try:
            payload = json.loads(raw)
        except RecursionError as exc:
            raise HTTPException(400, "body is nested too deeply") from exc
        except ValueError as exc:  # JSONDecodeError, invalid UTF-8
            raise HTTPException(400, f"body is not valid JSON: {exc}") from exc
        try:
            body = AsyncPredictRequest.model_validate(payload)
        except ValueError as exc:
            raise HTTPException(422, _pydantic_message(exc)) from exc
        return {"request_id": queue.submit(body).request_id}

    @app.get("/async_request/{request_id}", tags=["async"])
    async def async_request_status(request_id: str):
        return queue.describe(queue.get(request_id))

    @app.delete("/async_request/{request_id}", tags=["async"])
    async def async_request_cancel(request_id: str):
        request = queue.cancel(request_id)
        return {"request_id": request.request_id, "canceled": True, "message": "canceled while queued"}


def _pydantic_message(exc: Exception) -> str:
    errors = getattr(exc, "errors", None)
    if callable(errors):
        return "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in errors()
        )
    return str(exc)
