"""The store contract: jobs, step results, external events and the webhook outbox.

Both backends (SQLite for one process, PostgreSQL for several replicas) implement this one
contract and pass the same tests (tests/test_chain_store.py). The API is synchronous; async
callers go through `asyncio.to_thread` (see `AsyncStore`) so a slow disk never blocks the loop.

Durability rules the service relies on:
- every method has committed its writes when it returns;
- `finish_job` marks the job finished AND inserts its outbox row in one transaction, so a
  crash can never leave a finished job without its webhook (or a webhook for an unfinished job);
- job and outbox rows are handed out under time-limited leases: a worker that dies (kill -9)
  simply stops renewing, and another worker re-claims the row once the lease has expired.
"""
from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

JOB_QUEUED = "queued"
JOB_RUNNING = "running"
JOB_SUCCEEDED = "succeeded"
JOB_FAILED = "failed"
JOB_CANCELED = "canceled"
TERMINAL_JOB_STATES = frozenset({JOB_SUCCEEDED, JOB_FAILED, JOB_CANCELED})

DELIVERY_PENDING = "pending"
DELIVERY_DELIVERED = "delivered"
DELIVERY_FAILED = "failed"  # retries exhausted
DELIVERY_DISABLED = "disabled"  # endpoint answered 410 Gone


class IdempotencyConflict(Exception):
    """Same Idempotency-Key, different request body."""

    def __init__(self, key: str, job_id: str):
        super().__init__(f"Idempotency-Key {key!r} was already used for job {job_id} with a different body")
        self.key = key
        self.job_id = job_id


def new_job_id() -> str:
    return "job_" + uuid.uuid4().hex


def webhook_id_for(job_id: str) -> str:
    """The Standard Webhooks message id of a job's result: derived from the job, so every
    retry, every resumed run and every manual redelivery carries the same id."""
    return "msg_" + job_id.removeprefix("job_")


def request_hash(chain: str, inputs: Any, webhook_url: Optional[str]) -> str:
    """What makes two submissions 'the same request' for Idempotency-Key purposes."""
    canonical = json.dumps({"chain": chain, "inputs": inputs, "webhook_url": webhook_url},
                           sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass
class Job:
    id: str
    chain: str
    inputs: dict
    status: str
    created_at: float
    updated_at: float
    webhook_url: Optional[str] = None
    idempotency_key: Optional[str] = None
    request_hash: Optional[str] = None
    result: Optional[dict] = None  # {"outputs": ..., "trace": [...]} once finished
    error: Optional[str] = None
    attempts: int = 0  # how many times a worker claimed it (>1 means it was resumed)
    lease_owner: Optional[str] = None
    lease_expires_at: Optional[float] = None
    cancel_requested: bool = False

    @property
    def finished(self) -> bool:
        return self.status in TERMINAL_JOB_STATES


@dataclass
class Delivery:
    id: str  # the webhook-id
    job_id: str
    url: str
    payload: dict
    status: str
    attempts: int
    next_attempt_at: float
    created_at: float
    last_error: Optional[str] = None
    last_status_code: Optional[int] = None
    delivered_at: Optional[float] = None


@dataclass
class OutboxMessage:
    """What `finish_job` inserts next to the finished job."""
    url: str
    payload: dict
    id: Optional[str] = None  # defaults to webhook_id_for(job_id)


@dataclass
class Pending:
    job_id: str
    step: str
    kind: str  # "callback" | "approval"
    key: str
    created_at: float = field(default_factory=time.time)


class Store:
    """Abstract store. Implementations: SQLiteStore, PostgresStore."""

    url: str

    # -- lifecycle
    def close(self) -> None: raise NotImplementedError

    # -- jobs
    def create_job(self, chain: str, inputs: dict, *, webhook_url: Optional[str] = None,
                   idempotency_key: Optional[str] = None, req_hash: Optional[str] = None,
                   job_id: Optional[str] = None) -> tuple[Job, bool]:
        """Insert a queued job. With an idempotency key already used: the existing job and
        created=False when `req_hash` matches, IdempotencyConflict otherwise."""
        raise NotImplementedError

    def get_job(self, job_id: str) -> Optional[Job]: raise NotImplementedError

    def list_jobs(self, status: Optional[str] = None, limit: int = 100) -> list[Job]:
        raise NotImplementedError

    def claim_job(self, worker: str, lease_s: float, now: Optional[float] = None,
                  exclude: Sequence[str] = ()) -> Optional[Job]:
        """Atomically take the oldest queued job, or a running job whose lease expired
        (its worker died), and lease it to `worker`. None when there is nothing to do.
        Jobs in `exclude` (the caller's own running jobs) are never taken."""
        raise NotImplementedError

    def renew_lease(self, job_id: str, worker: str, lease_s: float) -> bool:
        """Extend the lease; False when `worker` no longer owns the job (it must stop)."""
        raise NotImplementedError

    def release_job(self, job_id: str, worker: str) -> bool:
        """Graceful shutdown: give the lease up now so the next claim (any worker) resumes the
        job at once instead of after the lease runs out. The job stays `running`."""
        raise NotImplementedError

    def expire_lease(self, job_id: str, worker: str) -> bool:
        """`worker` is known dead (its process is gone): make its running job claimable now
        instead of when the lease runs out. Unlike `release_job` the claim still counts as an
        interrupted run."""
        raise NotImplementedError

    def finish_job(self, job_id: str, worker: Optional[str], status: str, *,
                   result: Optional[dict] = None, error: Optional[str] = None,
                   outbox: Optional[OutboxMessage] = None) -> bool:
        """Mark the job terminal and insert its outbox row in the same transaction.
        `worker` None = not leased (e.g. canceling a queued job). False when the job is
        already terminal or leased to someone else; nothing is written then."""
        raise NotImplementedError

    def request_cancel(self, job_id: str) -> Optional[Job]:
        """Flag a job for cancellation (the running worker notices); returns the job."""
        raise NotImplementedError

    # -- steps (the durable journal)
    def record_step(self, job_id: str, step: str, record: dict) -> None:
        """Upsert the step's record (StepRecord.to_dict())."""
        raise NotImplementedError

    def get_steps(self, job_id: str) -> dict[str, dict]: raise NotImplementedError

    def note_pending(self, job_id: str, step: str, kind: str, key: str) -> None:
        """Remember that `step` waits for an external event (idempotent per job+step)."""
        raise NotImplementedError

    def get_pending(self, job_id: str) -> list[Pending]: raise NotImplementedError

    def find_pending(self, kind: str, key: str) -> Optional[Pending]:
        raise NotImplementedError

    # -- external events: Baseten callbacks, approvals
    def put_event(self, kind: str, key: str, payload: dict) -> bool:
        """Persist an external event; False (and nothing written) when (kind, key) exists:
        that is how duplicate callbacks are detected."""
        raise NotImplementedError

    def get_event(self, kind: str, key: str) -> Optional[dict]: raise NotImplementedError

    # -- webhook outbox
    def get_delivery(self, delivery_id: str) -> Optional[Delivery]: raise NotImplementedError

    def deliveries_for_job(self, job_id: str) -> list[Delivery]: raise NotImplementedError

    def claim_deliveries(self, worker: str, lease_s: float, limit: int = 10,
                         now: Optional[float] = None, exclude: Sequence[str] = ()) -> list[Delivery]:
        """Pending deliveries that are due and not leased (or whose lease expired), leased to
        `worker`. Deliveries in `exclude` (the caller's own attempts in flight) are never taken."""
        raise NotImplementedError

    # Outcome updates. With `worker` (the lease holder that made the attempt) the update applies
    # only while that worker still holds the row's lease: a stale attempt (its lease lapsed and
    # another worker took the row, it was already recorded, or an operator redelivered it) cannot
    # overwrite a newer outcome. Returns whether the outcome was recorded.
    def delivery_succeeded(self, delivery_id: str, status_code: int, *,
                           worker: Optional[str] = None) -> bool:
        raise NotImplementedError

    def delivery_retry(self, delivery_id: str, next_attempt_at: float, error: str,
                       status_code: Optional[int] = None, *, worker: Optional[str] = None) -> bool:
        """Count a failed attempt and schedule the next one."""
        raise NotImplementedError

    def delivery_give_up(self, delivery_id: str, status: str, error: str,
                         status_code: Optional[int] = None, *, worker: Optional[str] = None) -> bool:
        """Final failure: DELIVERY_FAILED (retries exhausted) or DELIVERY_DISABLED (410)."""
        raise NotImplementedError

    def redeliver(self, job_id: str, url: Optional[str], payload: Optional[dict]) -> Optional[Delivery]:
        """Queue the job's webhook again under the SAME webhook-id (reset attempts, due now);
        creates the row if the job never had one. Re-enables the endpoint (operator action)."""
        raise NotImplementedError

    def disable_endpoint(self, url: str, reason: str) -> None: raise NotImplementedError

    def endpoint_disabled(self, url: str) -> bool: raise NotImplementedError

    # -- small key/value for service metadata (e.g. a generated dev webhook secret)
    def get_meta(self, key: str) -> Optional[str]: raise NotImplementedError

    def set_meta_if_absent(self, key: str, value: str) -> str:
        """Store value unless the key exists; returns the stored value (race-safe)."""
        raise NotImplementedError


class AsyncStore:
    """Runs every Store method in a worker thread: `await astore.get_job(id)`."""

    def __init__(self, store: Store):
        self.sync = store

    def __getattr__(self, name: str):
        attr = getattr(self.sync, name)
        if not callable(attr):
            return attr

        @functools.wraps(attr)
        async def call(*args, **kwargs):
            return await asyncio.to_thread(attr, *args, **kwargs)

        return call


def open_store(url: str) -> Store:
    """`sqlite:///abs/path.db`, `sqlite:///:memory:` or `postgresql://...`."""
    if url.startswith("sqlite:"):
        from compound.service.store.sqlite import SQLiteStore
        return SQLiteStore(url)
    if url.startswith(("postgresql:", "postgres:")):
        from compound.service.store.postgres import PostgresStore
        return PostgresStore(url)
    raise ValueError(f"unsupported store URL {url!r}: use sqlite:///PATH or postgresql://...")
