"""DurableJournal: the executor's Journal backed by the store, so a run survives restarts.

- `record_step` commits the step before returning: after `kill -9`, a resumed run replays
  every recorded step instead of calling the model again.
- `note_pending` persists the async request id (or approval wait) before the step waits, so a
  resumed run waits for the same request instead of submitting a second one.
- `wait_external` returns as soon as the event is in the store: it may have arrived before
  we started waiting, while we were down, or on another replica (PostgreSQL). The in-process
  CallbackRegistry wakes it instantly when this process received it; a store poll covers the
  other cases.
"""
from __future__ import annotations

import asyncio
import time
from typing import Optional

from compound.service.callbacks import CallbackRegistry
from compound.service.executor import StepRecord, approval_key
from compound.service.store.base import AsyncStore


def event_key(job_id: str, kind: str, key: str) -> tuple[str, str]:
    """(kind, key) of the stored event a wait resolves on. Callback request ids are global
    (Baseten's); approvals are per job, so their key includes the job id."""
    if kind == "callback":
        return "callback", key
    return kind, f"{job_id}/{key}"


def registry_key(job_id: str, kind: str, key: str) -> str:
    return key if kind == "callback" else approval_key(job_id, key)


class DurableJournal:
    def __init__(self, store: AsyncStore, job_id: str, registry: CallbackRegistry,
                 steps: dict[str, StepRecord], pending: dict[str, dict], poll_s: float = 0.5):
        self.store = store
        self.job_id = job_id
        self.registry = registry
        self._steps = steps
        self._pending = pending
        self.poll_s = poll_s

    @classmethod
    async def load(cls, store: AsyncStore, job_id: str, registry: CallbackRegistry,
                   poll_s: float = 0.5) -> "DurableJournal":
        raw = await store.get_steps(job_id)
        steps = {name: StepRecord.from_dict(rec) for name, rec in raw.items()}
        pending = {p.step: {"kind": p.kind, "key": p.key}
                   for p in await store.get_pending(job_id) if p.step not in steps or steps[p.step].status == "failed"}
        return cls(store, job_id, registry, steps, pending, poll_s)

    def finished_steps(self) -> dict[str, StepRecord]:
        return dict(self._steps)

    def pending(self) -> dict[str, dict]:
        return dict(self._pending)

    async def record_step(self, record: StepRecord) -> None:
        await self.store.record_step(self.job_id, record.name, record.to_dict())
        self._steps[record.name] = record
        self._pending.pop(record.name, None)

    async def note_pending(self, step: str, kind: str, key: str) -> None:
        await self.store.note_pending(self.job_id, step, kind, key)
        self._pending[step] = {"kind": kind, "key": key}

    async def wait_external(self, step: str, kind: str, key: str, timeout_s: float) -> dict:
        ev_kind, ev_key = event_key(self.job_id, kind, key)
        deadline = time.monotonic() + timeout_s
        future = self.registry.expect(registry_key(self.job_id, kind, key))
        try:
            while True:
                stored: Optional[dict] = await self.store.get_event(ev_kind, ev_key)
                if stored is not None:
                    return stored
                left = deadline - time.monotonic()
                if left <= 0:
                    raise asyncio.TimeoutError(f"no {kind} for {step!r} within {timeout_s:g}s")
                done, _ = await asyncio.wait({future}, timeout=min(self.poll_s, left))
                if done:
                    return future.result()
        finally:
            if not future.done():
                future.cancel()
