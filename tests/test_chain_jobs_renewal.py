"""The job runner's lease renewal rides out brief store failures: a renewal (or the cancel
check after it) that raises is retried until the lease has actually run out, so a healthy run
is not abandoned — and its claim not counted toward max_job_claims — because of a store blip.
In-process: a real JobRunner on a SQLite store wrapped to fail some calls."""
from __future__ import annotations

import asyncio
import time

import httpx
from pydantic import BaseModel

from compound.service.callbacks import CallbackRegistry
from compound.service.endpoints import NodeEndpoints
from compound.service.graph import Chain, Node
from compound.service.jobs import JobRunner
from compound.service.settings import Settings
from compound.service.store import open_store
from compound.service.store.base import JOB_RUNNING, JOB_SUCCEEDED, AsyncStore


class In(BaseModel):
    x: int = 1


def _slow_chain(seconds: float) -> Chain:
    async def work(si):
        await asyncio.sleep(seconds)
        return {"value": si.input.x}

    return Chain("slow", In, [Node.code("work", work)], output=lambda steps, inp: steps["work"])


class FlakyStore(AsyncStore):
    """AsyncStore whose renew_lease raises on the calls numbered in `fail_renews` (1-based),
    whose get_job raises once right after the first successful renewal, or whose renewals all
    raise (`renew_down`)."""

    def __init__(self, store, fail_renews=(), fail_get_after_renew=False, renew_down=False):
        super().__init__(store)
        self.fail_renews = set(fail_renews)
        self.fail_get_after_renew = fail_get_after_renew
        self.renew_down = renew_down
        self.renew_calls = 0
        self.renew_failures = 0
        self.get_failures = 0
        self._renewed = False

    async def renew_lease(self, job_id, worker, lease_s):
        self.renew_calls += 1
        if self.renew_down or self.renew_calls in self.fail_renews:
            self.renew_failures += 1
            raise ConnectionError("store blip (test)")
        ok = await asyncio.to_thread(self.sync.renew_lease, job_id, worker, lease_s)
        self._renewed = self._renewed or ok
        return ok

    async def get_job(self, job_id):
        if self.fail_get_after_renew and self._renewed and not self.get_failures:
            self.get_failures += 1
            raise ConnectionError("store blip (test)")
        return await asyncio.to_thread(self.sync.get_job, job_id)


async def _run_until(astore, settings, chain, job_id, done, timeout_s):
    async with httpx.AsyncClient() as http:
        runner = JobRunner(astore, settings, lambda name: chain, CallbackRegistry(), NodeEndpoints(), http)
        task = asyncio.create_task(runner.run())
        try:
            deadline = time.monotonic() + timeout_s
            while time.monotonic() < deadline:
                job = await asyncio.to_thread(astore.sync.get_job, job_id)
                if done(job):
                    return job, runner
                await asyncio.sleep(0.05)
            return await asyncio.to_thread(astore.sync.get_job, job_id), runner
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


async def test_renewal_errors_do_not_abandon_a_healthy_run(tmp_path):
    store = open_store(f"sqlite:///{tmp_path / 'store.db'}")
    try:
        # Lease 1.5 s, renewed every 0.5 s; the run takes 2.5 s. The 1st and 2nd renewals and
        # one cancel check fail: the lease never actually lapses, so the run must go on.
        settings = Settings(job_lease_s=1.5, job_workers=1, poll_s=0.05)
        astore = FlakyStore(store, fail_renews=(1, 2), fail_get_after_renew=True)
        job, _ = store.create_job("slow", {"x": 7})
        final, _ = await _run_until(astore, settings, _slow_chain(2.5), job.id,
                                    lambda j: j.status != JOB_RUNNING and j.status != "queued", 15)
        assert astore.renew_failures == 2 and astore.get_failures == 1
        assert final.status == JOB_SUCCEEDED, (final.status, final.error)
        assert final.attempts == 1  # one claim: the blips cost no interrupted run
        assert final.result["outputs"] == {"value": 7}
    finally:
        store.close()


async def test_run_is_abandoned_once_the_lease_is_really_gone(tmp_path):
    store = open_store(f"sqlite:///{tmp_path / 'store.db'}")
    try:
        # The store never renews: after the lease deadline this run must stop (another worker
        # may own the job by then) and write no result.
        settings = Settings(job_lease_s=0.6, job_workers=1, poll_s=0.05)
        astore = FlakyStore(store, renew_down=True)
        job, _ = store.create_job("slow", {"x": 1})
        started = time.monotonic()
        final, _ = await _run_until(astore, settings, _slow_chain(30), job.id,
                                    lambda j: j.attempts >= 2, 10)
        assert final.attempts >= 2  # the lease ran out; the job was claimed again
        assert time.monotonic() - started < 10
        assert final.status == JOB_RUNNING and final.result is None
    finally:
        store.close()
