"""Run a chain: schedule ready nodes concurrently, retry per policy, journal every step.

A node starts as soon as all its dependencies have finished, so independent nodes overlap.
Each finished step is written to the Journal before its dependents start; a resumed run
(same journal) replays finished steps instead of re-running them, and an async step that was
waiting on a webhook waits for the same request id instead of resubmitting.
"""
from __future__ import annotations

import asyncio
import inspect
import random
import time
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, AsyncIterator, Callable, Optional, Protocol, runtime_checkable

import httpx
from pydantic import BaseModel, ValidationError
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_exponential

from compound.service import clients
from compound.service.callbacks import CallbackRegistry
from compound.service.endpoints import NodeEndpoints
from compound.service.graph import (Chain, CheckFailed, Node, NodeError, Reply, StepInput,
                                    validation_message)

SUCCEEDED, FAILED, REJECTED, SKIPPED = "succeeded", "failed", "rejected", "skipped"


@dataclass
class StepRecord:
    name: str  # journal key: the node name, "name#2" for its 2nd repair round
    status: str  # "succeeded" | "failed" | "rejected" | "skipped"
    output: Optional[dict] = None
    error: Optional[str] = None
    attempts: int = 0
    started_at: float = 0.0
    ended_at: float = 0.0
    node: Optional[str] = None  # the graph node (name without the round suffix)
    round: int = 1

    @property
    def duration_s(self) -> float:
        return max(0.0, self.ended_at - self.started_at)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "StepRecord":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


@runtime_checkable
class Journal(Protocol):
    """Durable memory of one run. A resumed run skips steps the journal already holds."""

    def finished_steps(self) -> dict[str, StepRecord]: ...

    async def record_step(self, record: StepRecord) -> None:
        """Must be durable when it returns."""

    async def wait_external(self, step: str, kind: str, key: str, timeout_s: float) -> dict:
        """kind "callback": key = async request_id, returns the webhook body;
        kind "approval": key = step, returns {"approved": bool, "comment": str|None, "data": dict|None}.
        Raises TimeoutError (asyncio.TimeoutError) after timeout_s."""

    async def note_pending(self, step: str, kind: str, key: str) -> None:
        """Persisted before waiting, so a resumed run waits for the same request."""

    # Optional (executor uses it when present): {step: {"kind": ..., "key": ...}} noted and not
    # yet finished -> the resumed run waits on these instead of resubmitting.
    # def pending(self) -> dict[str, dict]: ...


def approval_key(run_id: str, step: str) -> str:
    """Registry key an approval for `step` of run `run_id` resolves."""
    return f"approval:{run_id}:{step}"


class InMemoryJournal:
    """Journal for synchronous runs (chain Truss, tests, stream_chain): lives as long as the run."""

    def __init__(self, registry: Optional[CallbackRegistry] = None, run_id: str = ""):
        self.registry = registry or CallbackRegistry()
        self.run_id = run_id
        self.steps: dict[str, StepRecord] = {}
        self._pending: dict[str, dict] = {}

    def finished_steps(self) -> dict[str, StepRecord]:
        return dict(self.steps)

    def pending(self) -> dict[str, dict]:
        return dict(self._pending)

    async def record_step(self, record: StepRecord) -> None:
        self.steps[record.name] = record
        self._pending.pop(record.name, None)

    async def note_pending(self, step: str, kind: str, key: str) -> None:
        self._pending[step] = {"kind": kind, "key": key}

    async def wait_external(self, step: str, kind: str, key: str, timeout_s: float) -> dict:
        registry_key = key if kind == "callback" else approval_key(self.run_id, key)
        return await asyncio.wait_for(self.registry.expect(registry_key), timeout_s)


@dataclass
class RunContext:
    endpoints: NodeEndpoints
    callback_url: Optional[str] = None  # where async nodes' webhooks reach this service
    registry: CallbackRegistry = field(default_factory=CallbackRegistry)
    http: Optional[httpx.AsyncClient] = None  # shared client; a per-run one when None
    cancel: Optional[asyncio.Event] = None  # set -> the run stops, status "canceled"
    mode_overrides: dict[str, str] = field(default_factory=dict)  # node name -> "sync"|"async"
    on_step: Optional[Callable[[StepRecord], Any]] = None  # progress hook (may be async)


@dataclass
class RunResult:
    status: str  # "succeeded" | "failed" | "canceled"
    outputs: dict
    trace: list[StepRecord]
    error: Optional[str] = None
    steps: dict[str, Optional[dict]] = field(default_factory=dict)  # node -> latest output
    failed_step: Optional[str] = None

    def to_dict(self) -> dict:
        return {
            "status": self.status,
            "outputs": self.outputs,
            "error": self.error,
            "failed_step": self.failed_step,
            "trace": [r.to_dict() for r in self.trace],
        }


class ChainFailed(Exception):
    """stream_chain: the steps before the streamed tail failed (raised before any byte)."""

    def __init__(self, result: RunResult):
        super().__init__(result.error)
        self.result = result


class ChainInputError(ValueError):
    pass


class _Rejected(Exception):
    pass


def _validate(model: Optional[type[BaseModel]], value: Any, what: str, kind: str) -> Any:
    if model is None:
        return value
    try:
        return model.model_validate(value).model_dump(mode="json", exclude_none=True)
    except ValidationError as exc:
        raise NodeError(kind, f"{what} does not match {model.__name__}: {validation_message(exc)}") from exc


def _retrying(node: Node) -> AsyncRetrying:
    policy = node.retry
    return AsyncRetrying(
        stop=stop_after_attempt(policy.attempts),
        wait=wait_exponential(multiplier=policy.initial_delay_s, max=policy.max_delay_s),
        retry=retry_if_exception(lambda e: isinstance(e, NodeError) and e.kind in policy.retry_on),
        reraise=True,
    )


@asynccontextmanager
async def _http_client(ctx: RunContext):
    if ctx.http is not None:
        yield ctx.http
        return
    async with clients.new_http_client() as http:
        yield http


class _Run:
    def __init__(self, chain: Chain, chain_input: BaseModel, journal: Journal, ctx: RunContext,
                 http: httpx.AsyncClient, exclude: frozenset = frozenset()):
        self.chain, self.input, self.journal, self.ctx, self.http = chain, chain_input, journal, ctx, http
        self.exclude = exclude
        self.done = dict(journal.finished_steps())
        pending = getattr(journal, "pending", None)
        self.pending: dict[str, dict] = dict(pending()) if callable(pending) else {}
        self.rounds = {n.name: 1 for n in chain.nodes}
        self.feedback: dict[str, list[str]] = {n.name: [] for n in chain.nodes}
        self.outputs: dict[str, Optional[dict]] = {}
        self.trace: list[StepRecord] = []

    def key(self, node: Node) -> str:
        r = self.rounds[node.name]
        return node.name if r == 1 else f"{node.name}#{r}"

    async def run(self) -> RunResult:
        running: dict[asyncio.Task, Node] = {}
        failure: Optional[StepRecord] = None
        canceled = False
        cancel_wait = asyncio.ensure_future(self.ctx.cancel.wait()) if self.ctx.cancel else None
        try:
            while True:
                if failure is None and not canceled:
                    busy = set(running.values())
                    for node in self.chain.order():
                        if (node.name in self.outputs or node in busy or node.name in self.exclude):
                            continue
                        if all(d in self.outputs for d in node.depends_on):
                            running[asyncio.ensure_future(self._step(node))] = node
                if not running:
                    break
                waiting = set(running) | ({cancel_wait} if cancel_wait else set())
                finished, _ = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
                if cancel_wait is not None and cancel_wait in finished:
                    canceled = True
                    break
                for task in finished:
                    node = running.pop(task)
                    record = task.result()
                    self.trace.append(record)
                    failure = self._absorb(node, record) or failure
                if failure is not None:
                    break
        finally:
            for task in running:
                task.cancel()
            if running:
                await asyncio.gather(*running, return_exceptions=True)
            if cancel_wait is not None:
                cancel_wait.cancel()
        if canceled:
            return RunResult("canceled", {}, self.trace, "run canceled", dict(self.outputs))
        if failure is not None:
            return RunResult("failed", {}, self.trace, failure.error, dict(self.outputs),
                             failed_step=failure.node)
        return RunResult(SUCCEEDED, {}, self.trace, None, dict(self.outputs))

    def _absorb(self, node: Node, record: StepRecord) -> Optional[StepRecord]:
        """Fold a finished step into the run state; returns it when it fails the run."""
        if record.status in (SUCCEEDED, SKIPPED):
            self.outputs[node.name] = record.output
            return None
        repair = node.repair
        if record.status == REJECTED and repair is not None:
            target = repair.target
            try:
                rounds = repair.rounds(self.input)
            except Exception as exc:  # the chain's own code: fail the run, not the server
                record.error = f"node {node.name!r}: repair rounds failed: {type(exc).__name__}: {exc}"
                return record
            if self.rounds[target] < rounds:
                self.rounds[target] += 1
                self.rounds[node.name] += 1
                self.feedback[target] = list((record.output or {}).get("failed", []))
                self.outputs.pop(target, None)
                return None
            record.error = (f"node {node.name!r} rejected the output of {target!r} after "
                            f"{self.rounds[target]} round(s): {record.error}")
        return record

    async def _step(self, node: Node) -> StepRecord:
        key = self.key(node)
        replay = self.done.get(key)
        if replay is not None and replay.status != FAILED:
            return replay
        si = StepInput(self.input, dict(self.outputs), list(self.feedback[node.name]),
                       self.rounds[node.name])
        record = StepRecord(name=key, status=SUCCEEDED, node=node.name, round=si.round,
                            started_at=time.time())
        try:
            if node.when is not None and not node.when(si):
                record.status = SKIPPED
            elif node.map_over is not None:
                record.output, record.attempts = await self._map(node, si, key)
            else:
                record.output, record.attempts = await self._with_retry(node, si, key)
        except CheckFailed as exc:
            record.status, record.output = REJECTED, {"failed": exc.failed}
            record.error = f"check failed: {exc}"
            record.attempts = 1
        except _Rejected as exc:
            record.status, record.error, record.attempts = REJECTED, f"node {node.name!r} rejected: {exc}", 1
        except _Exhausted as exc:
            record.status, record.attempts = FAILED, exc.attempts
            record.error = f"node {node.name!r} failed after {exc.attempts} attempt(s): {exc.error}"
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug in the chain's own code (when/map_over): fail this step
            record.status, record.attempts = FAILED, max(record.attempts, 1)
            record.error = f"node {node.name!r} failed: code: {type(exc).__name__}: {exc}"
        record.ended_at = time.time()
        await self.journal.record_step(record)
        if self.ctx.on_step is not None:
            maybe = self.ctx.on_step(record)
            if inspect.isawaitable(maybe):
                await maybe
        return record

    async def _with_retry(self, node: Node, si: StepInput, key: str) -> tuple[dict, int]:
        attempts = 0
        try:
            async for attempt in _retrying(node):
                with attempt:
                    attempts += 1
                    return await self._attempt(node, si, key, attempts), attempts
        except NodeError as exc:
            raise _Exhausted(exc, attempts) from exc
        raise AssertionError("unreachable")

    async def _map(self, node: Node, si: StepInput, key: str) -> tuple[dict, int]:
        """A call per item, `node.concurrency` at a time, each retried on its own."""
        items = list(node.map_over(si))
        gate = asyncio.Semaphore(max(1, node.concurrency))
        counts = [0] * len(items)

        async def one(i: int, item: Any) -> dict:
            async with gate:
                try:
                    out, counts[i] = await self._with_retry(node, replace(si, item=item, index=i), f"{key}[{i}]")
                except _Exhausted as exc:
                    raise _Exhausted(NodeError(exc.error.kind, f"item {i}: {exc.error.message}"), exc.attempts) from exc
                return out

        tasks = [asyncio.ensure_future(one(i, it)) for i, it in enumerate(items)]
        try:
            results = await asyncio.gather(*tasks)
        finally:
            for t in tasks:
                t.cancel()
        return {"items": list(results)}, sum(counts)

    async def _attempt(self, node: Node, si: StepInput, key: str, attempt: int) -> dict:
        try:
            async with asyncio.timeout(node.timeout_s):
                if node.kind == "code":
                    output = await self._code(node, si)
                elif node.kind == "human":
                    output = await self._human(node, key)
                else:
                    output = await self._truss(node, si, key, attempt)
        except TimeoutError as exc:
            raise NodeError("timeout", f"no result within {node.timeout_s:g}s") from exc
        if not isinstance(output, dict):
            raise NodeError("schema", f"output must be an object, got {type(output).__name__}")
        return _validate(node.output_model, output, "output", "schema")

    async def _code(self, node: Node, si: StepInput) -> Any:
        try:
            result = node.run(si)
            if inspect.isawaitable(result):
                result = await result
            return result
        except (CheckFailed, NodeError, _Rejected, asyncio.CancelledError):
            raise
        except Exception as exc:
            raise NodeError("code", f"{type(exc).__name__}: {exc}") from exc

    async def _human(self, node: Node, key: str) -> dict:
        await self.journal.note_pending(key, "approval", key)
        answer = await self.journal.wait_external(key, "approval", key, node.timeout_s)
        if not answer.get("approved"):
            raise _Rejected(answer.get("comment") or "not approved")
        return {"approved": True, "comment": answer.get("comment"), "data": answer.get("data")}

    async def _truss(self, node: Node, si: StepInput, key: str, attempt: int) -> Any:
        try:
            body = node.request(si)
        except NodeError:
            raise
        except Exception as exc:
            raise NodeError("code", f"building the request failed: {type(exc).__name__}: {exc}") from exc
        body = _validate(node.input_model, body, "request body", "code")
        mode = self.ctx.mode_overrides.get(node.name, node.mode)
        if mode == "async":
            reply = await self._async_call(node, body, key, attempt)
        else:
            reply = await clients.predict(self.http, self.ctx.endpoints, node.endpoint, body, node.timeout_s)
        if node.parse is None:
            return reply.data
        try:
            return node.parse(reply, si)
        except NodeError:
            raise
        except Exception as exc:  # a reply the parser cannot read is a bad output
            raise NodeError("schema", f"unexpected output: {type(exc).__name__}: {exc}") from exc

    async def _async_call(self, node: Node, body: dict, key: str, attempt: int) -> Reply:
        if not self.ctx.callback_url:
            raise NodeError("config", f"node {node.name!r} is async but the run has no callback_url")
        noted = self.pending.pop(key, None) if attempt == 1 else None
        if noted and noted.get("kind") == "callback":
            request_id = noted["key"]  # resumed: the request is already queued
        else:
            request_id = await clients.submit_async(self.http, self.ctx.endpoints, node.endpoint, body,
                                                    self.ctx.callback_url, node.timeout_s,
                                                    max_time_in_queue_s=int(node.timeout_s))
            await self.journal.note_pending(key, "callback", request_id)
        payload = await self.journal.wait_external(key, "callback", request_id, node.timeout_s)
        return clients.reply_from_webhook(payload, body, node.endpoint)


class _Exhausted(Exception):
    def __init__(self, error: NodeError, attempts: int):
        super().__init__(str(error))
        self.error, self.attempts = error, attempts


def parse_chain_input(chain: Chain, inputs: Any) -> BaseModel:
    try:
        return chain.parse_input(inputs)
    except ValidationError as exc:
        raise ChainInputError(f"invalid input for chain {chain.name!r}: {validation_message(exc)}") from exc


async def run_chain(chain: Chain, inputs: dict, journal: Journal, ctx: RunContext) -> RunResult:
    """Run (or resume) `chain` on `inputs`. Invalid inputs raise ChainInputError (API: 422);
    node failures come back as RunResult(status="failed", error="node 'x' failed after N ...")."""
    chain_input = parse_chain_input(chain, inputs)
    async with _http_client(ctx) as http:
        result = await _Run(chain, chain_input, journal, ctx, http).run()
    if result.status == SUCCEEDED:
        try:
            result.outputs = chain.output(result.steps, chain_input)
        except Exception as exc:
            result.status, result.error = FAILED, f"assembling outputs failed: {type(exc).__name__}: {exc}"
    return result


async def stream_chain(chain: Chain, inputs: dict, ctx: RunContext, *, journal: Optional[Journal] = None,
                       on_head: Optional[Callable[[RunResult], Any]] = None) -> AsyncIterator[bytes]:
    """Run every node but `chain.stream_node`, then stream that node's bytes as they arrive.

    An async generator: input errors (ChainInputError) and head failures (ChainFailed) raise on
    the first `__anext__`, before any byte, so callers can still answer with an error status.
    `on_head(result)` sees the head's RunResult (step outputs, trace) before the first byte.
    """
    if chain.stream_node is None:
        raise ValueError(f"chain {chain.name!r} has no streaming tail")
    chain_input = parse_chain_input(chain, inputs)
    journal = journal if journal is not None else InMemoryJournal(ctx.registry)
    tail = chain.node(chain.stream_node)
    async with _http_client(ctx) as http:
        head = await _Run(chain, chain_input, journal, ctx, http, exclude=frozenset({tail.name})).run()
        if head.status != SUCCEEDED:
            raise ChainFailed(head)
        if on_head is not None:
            maybe = on_head(head)
            if inspect.isawaitable(maybe):
                await maybe
        si = StepInput(chain_input, dict(head.steps), stream=True)
        try:
            body = _validate(tail.input_model, tail.request(si), "request body", "code")
        except NodeError as exc:
            raise ChainFailed(_tail_failure(head, tail, 0, exc)) from exc
        policy = tail.retry
        sent = False
        for attempt in range(1, policy.attempts + 1):
            try:
                async with clients.open_stream(http, ctx.endpoints, tail.endpoint, body, tail.timeout_s) as (_, chunks):
                    try:
                        async with asyncio.timeout(tail.timeout_s):
                            first = await anext(chunks)
                    except StopAsyncIteration:
                        raise NodeError("schema", "the stream ended without any bytes")
                    except TimeoutError as exc:
                        raise NodeError("timeout", f"no first byte within {tail.timeout_s:g}s") from exc
                    sent = True
                    yield first
                    # Past the first byte there is no retrying: the client already has audio.
                    async for chunk in chunks:
                        yield chunk
                    return
            except NodeError as exc:
                if sent:
                    raise
                if exc.kind not in policy.retry_on or attempt == policy.attempts:
                    raise ChainFailed(_tail_failure(head, tail, attempt, exc)) from exc
                delay = min(policy.max_delay_s, policy.initial_delay_s * 2 ** (attempt - 1))
                await asyncio.sleep(delay * (1 + random.random() * 0.1))


def _tail_failure(head: RunResult, tail: Node, attempts: int, exc: NodeError) -> RunResult:
    error = f"node {tail.name!r} failed after {attempts} attempt(s): {exc}"
    record = StepRecord(tail.name, FAILED, None, error, attempts, time.time(), time.time(), tail.name)
    return RunResult(FAILED, {}, head.trace + [record], error, head.steps, failed_step=tail.name)
