"""The chain service's HTTP API (FastAPI; OpenAPI at /openapi.json, docs at /docs).

Sync runs (`/run`, `/stream`) use the executor's InMemoryJournal: the caller holds the
connection and gets the result; nothing is persisted (a crash = the client retries). Async
jobs (`/async`) are durable: store-backed journal, leases, outbox webhooks (see jobs.py,
outbox.py). Errors are `{"detail": {"error": "<what is wrong>", "field": <name or null>, ...}}`.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from typing import Any, Literal, Optional

import httpx
from fastapi import Body, Depends, FastAPI, Header, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from pydantic import BaseModel, ConfigDict, Field

from compound.service import baseten_signature
from compound.service.callbacks import CallbackRegistry
from compound.service.chain_catalog import ChainCatalog
from compound.service.endpoints import NodeEndpoints
from compound.service.executor import (
    ChainFailed, ChainInputError, InMemoryJournal, RunContext, approval_key, parse_chain_input,
    run_chain, stream_chain,
)
from compound.service.jobs import JobRunner, cancel_job, job_view, webhook_payload
from compound.service.journal import event_key
from compound.service.netguard import UnsafeURL, check_webhook_url
from compound.service.outbox import OutboxWorker, generate_secret
from compound.service.settings import Settings
from compound.service.store.base import AsyncStore, IdempotencyConflict, open_store, request_hash
from compound.service.security import ApiKeyAuth, BodySizeLimit

log = logging.getLogger("compound.service")


def problem(status: int, error: str, field: Optional[str] = None, **extra: Any) -> HTTPException:
    return HTTPException(status_code=status, detail={"error": error, "field": field, **extra})


class ChainRequest(BaseModel):
    inputs: dict = Field(..., description="The chain's input (see GET /v1/chains/{name} input_schema)")


class RunRequest(ChainRequest):
    node_modes: dict[str, Literal["sync", "async"]] = Field(
        default_factory=dict,
        description="Per-run call mode of Truss nodes: 'async' calls the node through its "
                    "async_predict with a Baseten-signed webhook back to this service")


class AsyncRunRequest(ChainRequest):
    webhook_url: Optional[str] = Field(
        None, description="Where the result is POSTed (Standard Webhooks signed), at least once")


class ErrorDetail(BaseModel):
    model_config = ConfigDict(extra="allow")
    error: str = Field(..., description="what is wrong, in words")
    field: Optional[str] = Field(None, description="the offending field/header, when there is one")


class ErrorResponse(BaseModel):
    detail: ErrorDetail


class RunResponse(BaseModel):
    """A finished run (also the 502 body when a node failed)."""
    model_config = ConfigDict(extra="allow")
    chain: str
    status: str
    outputs: Optional[dict] = None
    error: Optional[str] = None
    failed_step: Optional[str] = None
    trace: list[dict] = []


def _errors(*codes: int) -> dict:
    # Every error is {"detail": {"error", "field", ...}}; declaring 422 here also replaces
    # FastAPI's default HTTPValidationError schema, which our handler does not emit.
    return {code: {"model": ErrorResponse} for code in codes}


AUTH_ERRORS = (401, 413, 422)


class Decision(BaseModel):
    comment: Optional[str] = None
    data: Optional[dict] = None


class State:
    """Everything the routes share; built in the lifespan."""
    store: AsyncStore
    registry: CallbackRegistry
    endpoints: NodeEndpoints
    http: httpx.AsyncClient
    runner: Optional[JobRunner] = None
    outbox: Optional[OutboxWorker] = None
    webhook_secret: str
    tasks: list[asyncio.Task]


def _stream_media_type(chain_input: Any) -> str:
    fmt = getattr(chain_input, "response_format", None)
    return {"wav": "audio/wav", "mp3": "audio/mpeg", "pcm": "audio/pcm"}.get(fmt or "", "application/octet-stream")


def create_app(settings: Optional[Settings] = None, catalog: Optional[ChainCatalog] = None) -> FastAPI:
    settings = settings or Settings.from_env()
    catalog = catalog or ChainCatalog.load(settings.chain_plugins)
    state = State()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        store_url = settings.resolved_store_url()
        state.store = AsyncStore(await asyncio.to_thread(open_store, store_url))
        state.registry = CallbackRegistry()
        state.endpoints = NodeEndpoints.from_env(port_base=settings.port_base)
        state.http = httpx.AsyncClient(timeout=httpx.Timeout(60.0, connect=5.0))
        secret = settings.webhook_secret
        if not secret:
            secret = await state.store.set_meta_if_absent("webhook_secret", generate_secret())
            log.warning("COMPOUND_WEBHOOK_SECRET is not set; using the generated secret kept in the store: %s",
                        secret)
        state.webhook_secret = secret
        if not settings.api_key:
            log.warning("COMPOUND_API_KEY is not set: API-key auth is OFF (dev only)")
        if not settings.baseten_webhook_secrets:
            log.warning("COMPOUND_BASETEN_WEBHOOK_SECRET is not set: /v1/callbacks/baseten accepts unsigned "
                        "callbacks (dev only)")
        state.tasks = []
        if settings.run_workers:
            state.outbox = OutboxWorker(state.store, settings, secret)
            state.runner = JobRunner(state.store, settings, catalog.get, state.registry, state.endpoints,
                                     state.http, on_finished=state.outbox.wake)
            state.tasks = [asyncio.create_task(state.outbox.run(), name="outbox"),
                           asyncio.create_task(state.runner.run(), name="jobs")]
        log.info("chain service ready: store=%s chains=%s", store_url.split("@")[-1], ", ".join(catalog.names()))
        try:
            yield
        finally:
            for task in state.tasks:
                task.cancel()
            await asyncio.gather(*state.tasks, return_exceptions=True)
            await state.http.aclose()
            await asyncio.to_thread(state.store.sync.close)

    app = FastAPI(title="compound chain service", version="1", lifespan=lifespan,
                  description="Run compound-AI chains over the model Trusses: sync, streaming, or durable "
                              "async jobs with signed webhooks.")
    app.state.compound = state
    app.state.settings = settings
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    auth = Depends(ApiKeyAuth(settings.api_key))

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException):
        # One error shape everywhere, including FastAPI's own string details
        # ("There was an error parsing the body", 404 for unknown routes, 405).
        detail = exc.detail if isinstance(exc.detail, dict) else {"error": str(exc.detail), "field": None}
        return JSONResponse(status_code=exc.status_code, content={"detail": detail},
                            headers=getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError):
        errors = exc.errors()
        parts, fields = [], []
        for e in errors:
            loc = [str(p) for p in e.get("loc", ()) if p != "body"]
            name = ".".join(loc) or "(body)"
            fields.append(name)
            parts.append(f"{name}: {e.get('msg')}")
        return JSONResponse(status_code=422, content={"detail": {
            "error": "invalid request: " + "; ".join(parts), "field": fields[0] if fields else None,
            "errors": [{"loc": list(e.get("loc", ())), "msg": e.get("msg"), "type": e.get("type")} for e in errors],
        }})

    def chain_or_404(name: str):
        try:
            return catalog.get(name)
        except KeyError:
            raise problem(404, f"unknown chain {name!r}; valid chains: {', '.join(catalog.names()) or '(none)'}",
                          "name", valid=catalog.names())

    def validated_inputs(chain, inputs: dict):
        try:
            return parse_chain_input(chain, inputs)
        except ChainInputError as exc:
            raise problem(422, str(exc), "inputs")

    async def job_or_404(job_id: str):
        job = await state.store.get_job(job_id)
        if job is None:
            raise problem(404, f"no job {job_id!r}", "job_id")
        return job

    def ctx(node_modes: Optional[dict] = None) -> RunContext:
        return RunContext(endpoints=state.endpoints, callback_url=settings.callback_url,
                          registry=state.registry, http=state.http, mode_overrides=node_modes or {})

    def sync_runnable(chain):
        # A human step waits for /v1/jobs/{id}/steps/.../approve, which needs a durable job;
        # on a sync run nobody could approve and the request would hang until the step's timeout.
        human = [n.name for n in chain.nodes if n.kind == "human"]
        if human:
            raise problem(409, f"chain {chain.name!r} has human step(s) {', '.join(human)}; run it as a "
                               f"job: POST /v1/chains/{chain.name}/async", "name")
        return chain

    def validated_node_modes(chain, node_modes: dict) -> dict:
        truss_nodes = [n.name for n in chain.nodes if n.kind == "truss"]
        for name in node_modes:
            if name not in truss_nodes:
                raise problem(422, f"{name!r} is not a Truss node of chain {chain.name!r}; "
                                   f"Truss nodes: {', '.join(truss_nodes)}", f"node_modes.{name}")
        return node_modes

    @app.get("/healthz", tags=["ops"])
    async def healthz():
        return {"status": "ok"}

    @app.get("/v1/chains", tags=["chains"], dependencies=[auth], responses=_errors(*AUTH_ERRORS))
    async def list_chains():
        return {"chains": [catalog.get(n).describe() for n in catalog.names()]}

    @app.get("/v1/chains/{name}", tags=["chains"], dependencies=[auth], responses=_errors(*AUTH_ERRORS, 404))
    async def describe_chain(name: str):
        return chain_or_404(name).describe()

    @app.post("/v1/chains/{name}/run", tags=["chains"], dependencies=[auth], response_model=RunResponse,
              responses={**_errors(*AUTH_ERRORS, 404, 409),
                         502: {"model": RunResponse, "description": "a node failed; body has the trace"}})
    async def run_sync(name: str, req: RunRequest):
        """Run the chain now and answer with its outputs and per-node trace (in-memory journal)."""
        chain = sync_runnable(chain_or_404(name))
        validated_inputs(chain, req.inputs)
        node_modes = validated_node_modes(chain, req.node_modes)
        run_id = "run_" + uuid.uuid4().hex
        started = time.time()
        result = await run_chain(chain, req.inputs, InMemoryJournal(state.registry, run_id), ctx(node_modes))
        body = {"run_id": run_id, "chain": name, **result.to_dict(), "duration_s": time.time() - started}
        return JSONResponse(status_code=200 if result.status == "succeeded" else 502, content=body)

    @app.post("/v1/chains/{name}/stream", tags=["chains"], dependencies=[auth], response_class=StreamingResponse,
              responses={200: {"content": {"application/octet-stream": {}, "audio/wav": {}}},
                         **_errors(*AUTH_ERRORS, 400, 404, 409),
                         502: {"model": RunResponse, "description": "a node before the tail failed"}})
    async def run_stream(name: str, req: RunRequest):
        """Run the chain and stream its tail node's bytes (voice: audio) as they are produced.
        The head's trace comes in the `X-Chain-Trace` header (JSON)."""
        chain = sync_runnable(chain_or_404(name))
        if chain.stream_node is None:
            raise problem(400, f"chain {name!r} has no streaming tail; use /v1/chains/{name}/run", "name")
        chain_input = validated_inputs(chain, req.inputs)
        node_modes = validated_node_modes(chain, req.node_modes)
        head: dict = {}
        gen = stream_chain(chain, req.inputs, ctx(node_modes), on_head=lambda r: head.update(trace=[t.to_dict() for t in r.trace]))
        try:
            first = await anext(gen)
        except ChainInputError as exc:
            raise problem(422, str(exc), "inputs")
        except ChainFailed as exc:
            return JSONResponse(status_code=502, content={"chain": name, **exc.result.to_dict()})
        except StopAsyncIteration:
            first = b""

        async def body():
            if first:
                yield first
            async for chunk in gen:
                yield chunk

        trace = json.dumps([{k: t.get(k) for k in ("name", "status", "attempts", "started_at", "ended_at")}
                            for t in head.get("trace", [])], separators=(",", ":"))
        return StreamingResponse(body(), media_type=_stream_media_type(chain_input),
                                 headers={"X-Chain-Trace": trace})

    @app.post("/v1/chains/{name}/async", tags=["jobs"], status_code=202, dependencies=[auth],
              responses=_errors(*AUTH_ERRORS, 400, 404, 409))
    async def run_async(name: str, req: AsyncRunRequest,
                        idempotency_key: Optional[str] = Header(None, alias="Idempotency-Key")):
        """Queue a durable job; answers at once with `job_id`. Same Idempotency-Key + same body →
        the same job; a different body → 409."""
        chain = chain_or_404(name)
        validated_inputs(chain, req.inputs)
        if req.webhook_url is not None:
            try:
                await asyncio.to_thread(check_webhook_url, req.webhook_url, settings.allow_private_webhooks)
            except UnsafeURL as exc:
                raise problem(400, str(exc), "webhook_url")
        if idempotency_key is not None and not (0 < len(idempotency_key) <= 255):
            raise problem(400, "Idempotency-Key must be 1-255 characters", "Idempotency-Key")
        try:
            job, created = await state.store.create_job(
                name, req.inputs, webhook_url=req.webhook_url, idempotency_key=idempotency_key,
                req_hash=request_hash(name, req.inputs, req.webhook_url))
        except IdempotencyConflict as exc:
            raise problem(409, str(exc), "Idempotency-Key", job_id=exc.job_id)
        if created and state.runner is not None:
            state.runner.wake()
        return JSONResponse(status_code=202, content={"job_id": job.id, "status": job.status, "created": created,
                                                      "links": {"self": f"/v1/jobs/{job.id}"}},
                            headers={"Location": f"/v1/jobs/{job.id}"})

    async def full_view(job) -> dict:
        view = job_view(job, await state.store.deliveries_for_job(job.id))
        if not job.finished:  # live progress: the steps finished so far, and what is awaited
            view["trace"] = list((await state.store.get_steps(job.id)).values())
            view["pending"] = [{"step": p.step, "kind": p.kind, "key": p.key}
                               for p in await state.store.get_pending(job.id)
                               if p.step not in {t["name"] for t in view["trace"]}]
        return view

    @app.get("/v1/jobs/{job_id}", tags=["jobs"], dependencies=[auth], responses=_errors(*AUTH_ERRORS, 404))
    async def get_job(job_id: str):
        return await full_view(await job_or_404(job_id))

    @app.post("/v1/jobs/{job_id}/cancel", tags=["jobs"], dependencies=[auth],
              responses=_errors(*AUTH_ERRORS, 404, 409))
    async def cancel(job_id: str):
        job = await job_or_404(job_id)
        if job.finished:
            raise problem(409, f"job {job_id} already {job.status}", "job_id")
        job = await cancel_job(state.store, state.runner, job_id)
        return await full_view(job)

    @app.post("/v1/jobs/{job_id}/redeliver", tags=["jobs"], status_code=202, dependencies=[auth],
              responses=_errors(*AUTH_ERRORS, 404, 409))
    async def redeliver(job_id: str):
        """Send the job's webhook again (same webhook-id); re-enables an endpoint disabled by 410."""
        job = await job_or_404(job_id)
        if not job.finished:
            raise problem(409, f"job {job_id} is {job.status}; its webhook is sent when it finishes", "job_id")
        if not job.webhook_url:
            raise problem(409, f"job {job_id} has no webhook_url", "webhook_url")
        payload = webhook_payload(job, job.status, job.result, job.error)
        d = await state.store.redeliver(job.id, job.webhook_url, payload)
        if state.outbox is not None:
            state.outbox.wake()
        return JSONResponse(status_code=202, content={"job_id": job.id, "webhook_id": d.id, "status": d.status})

    async def decide(job_id: str, step: str, approved: bool, decision: Optional[Decision]):
        job = await job_or_404(job_id)
        if job.finished:
            raise problem(409, f"job {job_id} already {job.status}", "job_id")
        chain = chain_or_404(job.chain)
        node_name = step.split("#", 1)[0]
        humans = [n.name for n in chain.nodes if n.kind == "human"]
        if node_name not in humans:
            raise problem(404, f"chain {job.chain!r} has no human step {step!r}; human steps: {humans or 'none'}",
                          "step")
        payload = {"approved": approved, "comment": decision.comment if decision else None,
                   "data": decision.data if decision else None, "decided_at": time.time()}
        kind, key = event_key(job_id, "approval", step)
        if not await state.store.put_event(kind, key, payload):
            raise problem(409, f"step {step!r} of job {job_id} was already decided", "step")
        state.registry.resolve(approval_key(job_id, step), payload)
        return {"job_id": job_id, "step": step, "approved": approved}

    @app.post("/v1/jobs/{job_id}/steps/{step}/approve", tags=["jobs"], dependencies=[auth],
              responses=_errors(*AUTH_ERRORS, 404, 409))
    async def approve(job_id: str, step: str, decision: Optional[Decision] = Body(None)):
        return await decide(job_id, step, True, decision)

    @app.post("/v1/jobs/{job_id}/steps/{step}/reject", tags=["jobs"], dependencies=[auth],
              responses=_errors(*AUTH_ERRORS, 404, 409))
    async def reject(job_id: str, step: str, decision: Optional[Decision] = Body(None)):
        return await decide(job_id, step, False, decision)

    @app.post("/v1/callbacks/baseten", tags=["callbacks"], responses=_errors(400, 401, 409, 413))
    async def baseten_callback(request: Request):
        """Baseten async-predict webhook: signature → freshness → dedupe → persist → wake the run."""
        raw = await request.body()
        if settings.baseten_webhook_secrets:
            try:
                baseten_signature.verify(raw, request.headers.get("x-baseten-signature"),
                                         settings.baseten_webhook_secrets)
            except baseten_signature.SignatureError as exc:
                raise problem(401, str(exc), "X-BASETEN-SIGNATURE")
        try:
            body = json.loads(raw)
        except ValueError:
            raise problem(400, "callback body is not JSON", "body")
        if not isinstance(body, dict):
            raise problem(400, "callback body must be a JSON object", "body")
        request_id = body.get("request_id") or request.headers.get("x-baseten-request-id")
        if not request_id or not isinstance(request_id, str):
            raise problem(400, "callback has no request_id", "request_id")
        try:
            baseten_signature.check_fresh(body.get("time"), time.time())
        except baseten_signature.SignatureError as exc:
            raise problem(400, str(exc), "time")
        if not await state.store.put_event("callback", request_id, body):
            # Already stored: a re-delivery (e.g. the first answer timed out on the sender's side).
            # 2xx, so the sender stops retrying; the stored body is not replaced.
            return {"status": "duplicate", "request_id": request_id, "woke_waiter": False}
        woke = state.registry.resolve(request_id, body)
        return {"status": "accepted", "request_id": request_id, "woke_waiter": woke}

    return app
