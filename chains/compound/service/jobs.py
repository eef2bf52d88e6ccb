"""Async job runner: claim a job under a lease, run (or resume) it, finish it + queue its webhook.

Each process runs `settings.job_workers` worker loops. A worker:
1. claims the oldest queued job, or a running job whose lease expired (its worker died —
   kill -9, OOM, lost replica): stalled-lease recovery;
2. runs it through the executor with a DurableJournal, so steps finished before a crash are
   replayed from the store, not re-executed;
3. renews the lease every lease/3 while it runs; if renewal is refused (someone else owns the
   job now) it abandons the run without writing a result. A renewal that errors (the store
   briefly unavailable) is retried while the lease lasts; only a lease that really ran out
   abandons the run;
4. honours cancel requests (flag in the store, checked with each renewal);
5. finishes the job and inserts the webhook outbox row in ONE transaction, then wakes the
   outbox worker (delivery happens there, never in this loop).
"""
from __future__ import annotations

import asyncio
import functools
import json
import logging
import os
import socket
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Optional

import httpx

from compound.service.callbacks import CallbackRegistry
from compound.service.endpoints import NodeEndpoints
from compound.service.executor import RunContext, RunResult, run_chain
from compound.service.graph import Chain
from compound.service.journal import DurableJournal
from compound.service.settings import Settings
from compound.service.store.base import (
    JOB_CANCELED, JOB_FAILED, JOB_RUNNING, AsyncStore, Job, OutboxMessage,
)

log = logging.getLogger("compound.service.jobs")


def webhook_payload(job: Job, status: str, result: Optional[dict], error: Optional[str]) -> dict:
    """Standard Webhooks envelope: {type, timestamp, data}. Fixed when the job finishes, so
    every retry sends the same bytes."""
    return {
        "type": f"job.{status}",
        "timestamp": datetime.now(timezone.utc).isoformat().replace("+00:00", "Z"),
        "data": {
            "job_id": job.id,
            "chain": job.chain,
            "status": status,
            "outputs": (result or {}).get("outputs"),
            "trace": (result or {}).get("trace", []),
            "error": error,
        },
    }


@functools.cache  # fixed for the life of the process; read once, not per job at start-up
def _pid_namespace() -> str:
    """This process's PID namespace on this boot ("<boot id>.<pid-ns inode>"), or "na".

    Two replicas can share a host name yet not see each other's pids (host-network pods,
    `docker --network host`, a fixed compose hostname); a pid is only meaningful inside its
    namespace, so the worker id carries it."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip().replace("-", "")[:16]
        return f"{boot}.{os.stat('/proc/self/ns/pid').st_ino}"
    except OSError:
        return "na"


def local_worker_id(pid: Optional[int] = None) -> str:
    """"<host>-<pid namespace>-<pid>-<random>": unique per runner, and enough for a restarted
    process to tell whether the holder of a lease still exists (`dead_local_worker`)."""
    return f"{socket.gethostname()}-{_pid_namespace()}-{pid or os.getpid()}-{uuid.uuid4().hex[:6]}"


def dead_local_worker(worker_id: str) -> bool:
    """True when `worker_id` (see `local_worker_id`) names a process in this host's and this
    process's PID namespace that no longer exists. Anything else — another host or namespace,
    a live or reused pid, an id of another shape — is False: its lease runs out on its own,
    the safe direction."""
    parts = worker_id.rsplit("-", 3)
    namespace = _pid_namespace()
    if (len(parts) != 4 or parts[0] != socket.gethostname() or namespace == "na"
            or parts[1] != namespace or not parts[2].isdigit()):
        return False
    pid = int(parts[2])
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # exists, another user's
        return False
    return False


class JobRunner:
    def __init__(self, store: AsyncStore, settings: Settings, chains: Callable[[str], Chain],
                 registry: CallbackRegistry, endpoints: NodeEndpoints, http: httpx.AsyncClient,
                 on_finished: Callable[[], None] = lambda: None):
        self.store = store
        self.settings = settings
        self.chains = chains
        self.registry = registry
        self.endpoints = endpoints
        self.http = http
        self.on_finished = on_finished
        self.worker_id = local_worker_id()
        self._wake = asyncio.Event()
        self._active: dict[str, asyncio.Event] = {}  # job id -> cancel event

    def wake(self) -> None:
        """A job was submitted: look now instead of at the next poll."""
        self._wake.set()

    def cancel_local(self, job_id: str) -> bool:
        event = self._active.get(job_id)
        if event is None:
            return False
        event.set()
        return True

    async def run(self) -> None:
        try:
            await self._reclaim_dead_local_leases()
        except Exception:  # an optimization: leases still run out on their own
            log.exception("jobs: could not check for leases of dead local workers")
        loops = [asyncio.create_task(self._loop(i)) for i in range(self.settings.job_workers)]
        try:
            await asyncio.gather(*loops)
        finally:
            for task in loops:
                task.cancel()
            await asyncio.gather(*loops, return_exceptions=True)

    async def _reclaim_dead_local_leases(self) -> None:
        """After a crash (kill -9, OOM) the restarted service resumes the jobs its dead
        predecessor on this host held at once, instead of after their lease runs out."""
        for job in await self.store.list_jobs(status=JOB_RUNNING, limit=10_000):
            if job.lease_owner and dead_local_worker(job.lease_owner):
                if await self.store.expire_lease(job.id, job.lease_owner):
                    log.warning("jobs: %s was held by %s, a process on this host that is gone; "
                                "resuming it now", job.id, job.lease_owner)

    async def _loop(self, index: int) -> None:
        while True:
            try:
                # Never this process's own running jobs: their lease can lapse while they are
                # alive here (a renewal that ran late on a blocked event loop); taking one would
                # run it twice under the same worker id.
                job = await self.store.claim_job(self.worker_id, self.settings.job_lease_s,
                                                 exclude=tuple(self._active))
            except Exception:
                log.exception("jobs: claim failed")
                job = None
            if job is None:
                self._wake.clear()
                try:
                    await asyncio.wait_for(self._wake.wait(), timeout=self.settings.poll_s)
                except asyncio.TimeoutError:
                    pass
                continue
            if job.attempts > 1:
                log.warning("jobs: resuming %s (claim #%d; previous worker stopped)", job.id, job.attempts)
            try:
                await self._run_job(job)
            except asyncio.CancelledError:
                # Graceful shutdown (SIGTERM): hand the job back so a restart resumes it at once.
                # A thread call finishes even though this task is being cancelled.
                await asyncio.shield(self.store.release_job(job.id, self.worker_id))
                raise
            except Exception:
                log.exception("jobs: %s crashed in the runner; its lease will expire and it is retried", job.id)

    async def _run_job(self, job: Job) -> None:
        if job.attempts > self.settings.max_job_claims:
            # A job that keeps killing its worker (or the runner) must not loop forever.
            await self._finish(job, JOB_FAILED, None,
                               f"gave up after {job.attempts - 1} interrupted runs (max {self.settings.max_job_claims})")
            return
        if job.cancel_requested:
            await self._finish(job, JOB_CANCELED, None, "canceled before it started")
            return
        try:
            chain = self.chains(job.chain)
        except KeyError:
            await self._finish(job, JOB_FAILED, None, f"unknown chain {job.chain!r}")
            return
        journal = await DurableJournal.load(self.store, job.id, self.registry, poll_s=min(self.settings.poll_s, 0.5))
        cancel = asyncio.Event()
        ctx = RunContext(endpoints=self.endpoints, callback_url=self.settings.callback_url,
                         registry=self.registry, http=self.http, cancel=cancel)
        self._active[job.id] = cancel
        run = asyncio.create_task(run_chain(chain, job.inputs, journal, ctx))
        lost_lease = False
        lease_s = self.settings.job_lease_s
        # Wall clock, like the stored lease: until then no other worker can claim the job.
        lease_until = job.lease_expires_at if job.lease_expires_at is not None else time.time() + lease_s
        wait_s = lease_s / 3
        try:
            while not run.done():
                done, _ = await asyncio.wait({run}, timeout=wait_s)
                if done:
                    break
                wait_s = lease_s / 3
                asked_at = time.time()
                try:
                    renewed = await self.store.renew_lease(job.id, self.worker_id, lease_s)
                except Exception as exc:
                    # A store blip is not a lost lease: keep running and retry (sooner) while
                    # the lease we hold lasts; give up only once it has really run out.
                    if time.time() >= lease_until:
                        log.warning("jobs: could not renew the lease on %s before it ran out (%r); "
                                    "abandoning this run", job.id, exc)
                        lost_lease = True
                        run.cancel()
                        break
                    log.warning("jobs: renewing the lease on %s failed (%r); retrying, %.1f s of lease left",
                                job.id, exc, lease_until - time.time())
                    wait_s = max(0.05, min(lease_s / 10, lease_until - time.time()))
                    continue
                if not renewed:
                    lost_lease = True
                    run.cancel()
                    break
                lease_until = asked_at + lease_s
                try:
                    current = await self.store.get_job(job.id)
                except Exception as exc:  # the cancel check waits for the next renewal
                    log.warning("jobs: checking %s for a cancel request failed (%r)", job.id, exc)
                    continue
                if current is not None and current.cancel_requested:
                    cancel.set()
        finally:
            self._active.pop(job.id, None)
            if not run.done():
                run.cancel()
            await asyncio.gather(run, return_exceptions=True)
        if lost_lease:
            log.warning("jobs: lost the lease on %s; another worker owns it now", job.id)
            return
        try:
            result: RunResult = run.result()
        except asyncio.CancelledError:
            return  # shutting down: the lease was released (or expires) and the job is resumed
        except Exception as exc:
            await self._finish(job, JOB_FAILED, None, f"{type(exc).__name__}: {exc}")
            return
        payload = {"outputs": result.outputs, "trace": [r.to_dict() for r in result.trace],
                   "failed_step": result.failed_step}
        try:
            json.dumps(payload)
        except (TypeError, ValueError) as exc:  # unstorable result: fail the job, don't retry it forever
            await self._finish(job, JOB_FAILED, {"outputs": None, "trace": payload["trace"]},
                               f"chain outputs are not JSON-serializable: {exc}")
            return
        await self._finish(job, result.status, payload, result.error)

    async def _finish(self, job: Job, status: str, result: Optional[dict], error: Optional[str]) -> None:
        outbox = None
        if job.webhook_url:
            outbox = OutboxMessage(url=job.webhook_url, payload=webhook_payload(job, status, result, error))
        ok = await self.store.finish_job(job.id, self.worker_id, status, result=result, error=error, outbox=outbox)
        if ok:
            log.info("jobs: %s %s", job.id, status)
            self.on_finished()
        else:
            log.warning("jobs: %s was finished or re-leased elsewhere; result of this run dropped", job.id)


async def cancel_job(store: AsyncStore, runner: Optional[JobRunner], job_id: str) -> Optional[Job]:
    """Cancel: a queued job ends now (its webhook is queued); a running one is flagged and its
    worker stops it at the next lease renewal (at once when it runs in this process)."""
    job = await store.request_cancel(job_id)
    if job is None or job.finished:
        return job
    if runner is not None:
        runner.cancel_local(job_id)
    if job.status == "queued":
        outbox = None
        if job.webhook_url:
            outbox = OutboxMessage(url=job.webhook_url,
                                   payload=webhook_payload(job, JOB_CANCELED, None, "canceled"))
        if await store.finish_job(job.id, None, JOB_CANCELED, error="canceled", outbox=outbox):
            if runner is not None:
                runner.on_finished()
    return await store.get_job(job_id)


def job_view(job: Job, deliveries=()) -> dict:
    """The public JSON of a job (GET /v1/jobs/{id})."""
    result = job.result or {}
    return {
        "job_id": job.id,
        "chain": job.chain,
        "status": job.status,
        "outputs": result.get("outputs"),
        "trace": result.get("trace", []),
        "failed_step": result.get("failed_step"),
        "error": job.error,
        "attempts": job.attempts,
        "cancel_requested": job.cancel_requested,
        "created_at": job.created_at,
        "updated_at": job.updated_at,
        "webhook_url": job.webhook_url,
        "webhook": [
            {"webhook_id": d.id, "status": d.status, "attempts": d.attempts, "last_error": d.last_error,
             "last_status_code": d.last_status_code, "delivered_at": d.delivered_at}
            for d in deliveries
        ],
    }
