"""The outbox worker keeps each attempt inside its delivery lease: the URL check (a DNS lookup)
counts toward the attempt's time bound, the worker never claims a delivery it still has in
flight, and it records outcomes as the lease holder (store.delivery_* with worker=...).
In-process: a real OutboxWorker, a small fake store, an httpx MockTransport receiver."""
from __future__ import annotations

import asyncio
import threading
import time

import httpx

from compound.service import outbox as outbox_mod
from compound.service.outbox import OutboxWorker, generate_secret
from compound.service.settings import Settings
from compound.service.store.base import Delivery

SECRET = generate_secret()


class _NoBody(httpx.AsyncByteStream):
    """An empty streamed body (a Response built with content= counts as already read, which
    the worker's streamed reading of the answer would trip over)."""

    async def __aiter__(self):
        return
        yield  # pragma: no cover - makes this an async generator


def _answer(code: int) -> httpx.Response:
    return httpx.Response(code, stream=_NoBody())


def _delivery(url: str = "http://hook.test/x") -> Delivery:
    now = time.time()
    return Delivery(id="msg_lease_test", job_id="job-1", url=url, payload={"job_id": "job-1"},
                    status="pending", attempts=0, next_attempt_at=now, created_at=now)


class _Store:
    """One delivery; claim_deliveries hands it out whenever it is not excluded and not done
    (as the real store does once its lease has lapsed)."""

    def __init__(self, delivery: Delivery):
        self.delivery = delivery
        self.done = False
        self.calls: list[tuple] = []
        self.excludes: list[tuple] = []

    async def claim_deliveries(self, worker, lease_s, limit=10, now=None, exclude=()):
        self.excludes.append(tuple(exclude))
        if self.done or self.delivery.id in exclude:
            return []
        return [self.delivery]

    async def endpoint_disabled(self, url):
        return False

    async def delivery_succeeded(self, delivery_id, status_code, *, worker=None):
        self.done = True
        self.calls.append(("succeeded", status_code, worker))
        return True

    async def delivery_retry(self, delivery_id, next_attempt_at, error, status_code=None, *, worker=None):
        self.calls.append(("retry", error, status_code, worker))
        return True

    async def delivery_give_up(self, delivery_id, status, error, status_code=None, *, worker=None):
        self.done = True
        self.calls.append(("give_up", status, error, worker))
        return True

    async def disable_endpoint(self, url, reason):
        self.calls.append(("disable", url))


def test_a_slow_url_check_counts_toward_the_attempt_timeout(monkeypatch):
    # A DNS lookup that hangs must not stretch the attempt past webhook_timeout_s (the row's
    # lease is webhook_timeout_s + 5: beyond it another worker may send the same webhook).
    release = threading.Event()

    def slow_check(url, allow_private=False):
        release.wait(30)  # a lookup that hangs (until the test lets it go)
        return None

    monkeypatch.setattr(outbox_mod, "check_webhook_url", slow_check)
    store = _Store(_delivery())
    settings = Settings(allow_private_webhooks=True, webhook_schedule=(0.0, 5.0), webhook_jitter=0.0,
                        webhook_timeout_s=0.3)
    posts = []

    async def main():
        transport = httpx.MockTransport(lambda request: posts.append(request) or _answer(200))
        async with httpx.AsyncClient(transport=transport) as http:
            worker = OutboxWorker(store, settings, SECRET, http=http)
            started = time.monotonic()
            await worker._attempt(store.delivery)
            took = time.monotonic() - started
            release.set()  # let the abandoned lookup thread end
            return took, worker.worker_id

    took, worker_id = asyncio.run(main())
    # bounded by the 0.3 s timeout, not by the 30 s lookup (generous margin for a busy box)
    assert took < 10, f"attempt took {took:.2f} s with a 0.3 s timeout"
    assert posts == []
    assert store.calls == [("retry", "timed out after 0.3 s", None, worker_id)]


def test_the_worker_never_claims_a_delivery_it_still_has_in_flight():
    store = _Store(_delivery())
    settings = Settings(allow_private_webhooks=True, webhook_jitter=0.0, webhook_timeout_s=5.0, poll_s=0.02)
    posts = []

    async def slow_receiver(request):
        posts.append(request)
        await asyncio.sleep(0.6)  # many poll rounds while this attempt is in flight
        return _answer(204)

    async def main():
        async with httpx.AsyncClient(transport=httpx.MockTransport(slow_receiver)) as http:
            worker = OutboxWorker(store, settings, SECRET, http=http)
            task = asyncio.create_task(worker.run())
            deadline = time.monotonic() + 5
            while not store.done and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
            await asyncio.sleep(0.1)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            return worker.worker_id

    worker_id = asyncio.run(main())
    assert len(posts) == 1  # one attempt, not one per poll round
    assert store.calls == [("succeeded", 204, worker_id)]
    assert (store.delivery.id,) in store.excludes  # polled while it was in flight, excluded
