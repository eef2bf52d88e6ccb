"""Webhook delivery from the outbox table, per Standard Webhooks (standardwebhooks library).

- At least once: a row leaves `pending` only after a 2xx (or a final give-up). A crash between
  the POST and the store update means one more POST — with the SAME `webhook-id`, so receivers
  deduplicate on it. The id is derived from the job (store.webhook_id_for), never random.
- Retries: 429, 5xx, timeouts, connection errors and any other non-2xx are retried on the
  schedule (Standard Webhooks: immediately, 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 14 h, 20 h, 24 h;
  +-jitter; configurable), never sooner than a Retry-After header asks.
- 410 Gone disables the endpoint: no further deliveries to that URL until a manual redeliver.
- Runs as its own asyncio task with its own concurrency limit: a slow receiver never holds up
  chain workers, and many deliveries run in parallel.
- A host that does not resolve (DNS briefly down, NXDOMAIN) is retried like a connection
  error; only a URL refused by policy (scheme, credentials, non-public address) gives up at once.
- SSRF: each attempt re-checks the URL (netguard.check_webhook_url) and, unless private
  webhooks are allowed, POSTs to one of the addresses that check vetted (netguard.post_pinned,
  with the original Host and TLS SNI), so a name that rebinds to an internal address between
  the check and the connect cannot redirect the POST.
- Of the receiver's answer only the status and headers are used; its body is read no further
  than netguard.MAX_RESPONSE_BYTES (64 KiB), then the response is closed.
"""
from __future__ import annotations

import asyncio
import base64
import email.utils
import json
import logging
import os
import random
import secrets as pysecrets
import socket
import time
import uuid
from datetime import datetime, timezone
from typing import Optional

import httpx
from standardwebhooks import Webhook

from compound.service.netguard import (
    UnresolvableURL, UnsafeURL, check_webhook_url, discard_body, post_pinned,
)
from compound.service.settings import Settings
from compound.service.store.base import (
    DELIVERY_DISABLED, DELIVERY_FAILED, AsyncStore, Delivery,
)

log = logging.getLogger("compound.service.outbox")

MAX_RETRY_AFTER_S = 24 * 3600.0


def generate_secret() -> str:
    return "whsec_" + base64.b64encode(pysecrets.token_bytes(24)).decode()


def signed_headers(secret: str, msg_id: str, body: str, now: Optional[float] = None) -> dict[str, str]:
    """The three Standard Webhooks headers for `body` (a str: exactly the bytes we send)."""
    ts = datetime.fromtimestamp(time.time() if now is None else now, tz=timezone.utc)
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(ts.timestamp())),
        "webhook-signature": Webhook(secret).sign(msg_id, ts, body),
    }


def parse_retry_after(value: Optional[str], now: Optional[float] = None) -> Optional[float]:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP-date)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def next_delay(schedule: tuple[float, ...], attempts_done: int, jitter: float,
               retry_after: Optional[float] = None) -> Optional[float]:
    """Delay before the next attempt after `attempts_done` attempts; None = give up."""
    if attempts_done >= len(schedule):
        return None
    delay = schedule[attempts_done]
    if jitter:
        delay *= 1 + random.uniform(-jitter, jitter)
    if retry_after is not None:
        delay = max(delay, min(retry_after, MAX_RETRY_AFTER_S))
    return max(0.0, delay)


class OutboxWorker:
    def __init__(self, store: AsyncStore, settings: Settings, secret: str,
                 http: Optional[httpx.AsyncClient] = None, concurrency: int = 16):
        self.store = store
        self.settings = settings
        self.secret = secret
        Webhook(secret)  # fail at startup, not at first delivery, on a malformed secret
        self.worker_id = f"outbox-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self._http = http
        self._own_http = http is None
        self._wake = asyncio.Event()
        self._sem = asyncio.Semaphore(concurrency)
        self._in_flight: dict[str, asyncio.Task] = {}  # delivery id -> its attempt running here
        self._concurrency = concurrency

    def wake(self) -> None:
        """Something new is due (a job just finished): look now instead of at the next poll."""
        self._wake.set()

    @property
    def lease_s(self) -> float:
        # Long enough to cover one attempt; after a crash the row is retried once it expires.
        return self.settings.webhook_timeout_s + 5

    async def run(self) -> None:
        if self._http is None:
            self._http = httpx.AsyncClient(follow_redirects=False)
        try:
            while True:
                free = self._concurrency - len(self._in_flight)
                batch: list[Delivery] = []
                if free > 0:
                    try:
                        # Never a delivery still in flight here: its lease can lapse while its
                        # attempt (or the outcome write) runs late; claiming it would POST it twice.
                        batch = await self.store.claim_deliveries(self.worker_id, self.lease_s, limit=free,
                                                                  exclude=tuple(self._in_flight))
                    except Exception:  # store briefly unavailable: keep the worker alive
                        log.exception("outbox: claim failed")
                for delivery in batch:
                    task = asyncio.create_task(self._deliver(delivery))
                    self._in_flight[delivery.id] = task
                    task.add_done_callback(lambda _t, did=delivery.id: self._in_flight.pop(did, None))
                if batch and len(batch) == free:
                    continue  # maybe more due right now
                self._wake.clear()
                try:
                    await asyncio.wait_for(self._wake.wait(), timeout=self.settings.poll_s)
                except asyncio.TimeoutError:
                    pass
        finally:
            # Shutting down: deliveries already on the wire get one attempt's time to finish, so
            # their outcome is recorded instead of the receiver seeing the same webhook-id again
            # after the restart. Whatever is still running then is cancelled (its row stays
            # leased and is retried once the lease runs out: at least once either way).
            if self._in_flight:
                await asyncio.wait(set(self._in_flight.values()), timeout=self.settings.webhook_timeout_s)
            unfinished = list(self._in_flight.values())
            for task in unfinished:
                task.cancel()
            await asyncio.gather(*unfinished, return_exceptions=True)
            if self._own_http and self._http is not None:
                await self._http.aclose()

    async def _deliver(self, d: Delivery) -> None:
        async with self._sem:
            try:
                await self._attempt(d)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # never lose the row: schedule a retry
                log.exception("outbox: delivery %s crashed", d.id)
                await self._failed(d, f"internal error: {exc!r}", None, None)
        self.wake()

    async def _attempt(self, d: Delivery) -> None:
        if await self.store.endpoint_disabled(d.url):
            await self.store.delivery_give_up(d.id, DELIVERY_DISABLED, "endpoint disabled (410 Gone earlier)",
                                              worker=self.worker_id)
            return
        body = json.dumps(d.payload, separators=(",", ":"))
        headers = signed_headers(self.secret, d.id, body)
        headers["content-type"] = "application/json"
        headers["user-agent"] = "compound-chain-service"
        try:
            # httpx timeouts are per phase; asyncio.timeout bounds the whole attempt, the URL
            # check (a DNS lookup) included: a slow resolver or a receiver dribbling bytes must
            # not hold the row past its lease (webhook_timeout_s + 5).
            async with asyncio.timeout(self.settings.webhook_timeout_s):
                # None: private webhooks allowed, nothing vetted, deliver by name (local dev).
                addresses = await asyncio.to_thread(check_webhook_url, d.url,
                                                    self.settings.allow_private_webhooks)
                if addresses is None:
                    request = self._http.build_request("POST", d.url, content=body.encode(), headers=headers,
                                                       timeout=self.settings.webhook_timeout_s)
                    resp = await self._http.send(request, stream=True)
                    await discard_body(resp)  # status and headers are all we use: never the whole body
                else:  # connect only to a vetted address (no second DNS lookup: rebinding)
                    resp = await post_pinned(d.url, addresses, content=body.encode(), headers=headers,
                                             timeout=self.settings.webhook_timeout_s)
        except UnresolvableURL as exc:  # DNS down or NXDOMAIN may be temporary: retry on schedule
            await self._failed(d, str(exc), None, None)
            return
        except UnsafeURL as exc:  # refused by policy (scheme, credentials, private address): final
            await self.store.delivery_give_up(d.id, DELIVERY_FAILED, str(exc), worker=self.worker_id)
            return
        except (httpx.TimeoutException, TimeoutError):
            await self._failed(d, f"timed out after {self.settings.webhook_timeout_s:g} s", None, None)
            return
        except httpx.HTTPError as exc:
            await self._failed(d, f"{type(exc).__name__}: {exc}", None, None)
            return
        code = resp.status_code
        if 200 <= code < 300:
            if await self.store.delivery_succeeded(d.id, code, worker=self.worker_id):
                log.info("outbox: delivered %s to %s (attempt %d)", d.id, d.url, d.attempts + 1)
            else:  # our lease had passed to another attempt (or a redeliver reset the row)
                log.warning("outbox: %s answered %d to a stale attempt; outcome not recorded", d.url, code)
        elif code == 410:
            await self.store.disable_endpoint(d.url, f"410 Gone on {d.id}")
            await self.store.delivery_give_up(d.id, DELIVERY_DISABLED, "HTTP 410 Gone: endpoint disabled", code,
                                              worker=self.worker_id)
            log.warning("outbox: %s answered 410; endpoint disabled", d.url)
        else:
            await self._failed(d, f"HTTP {code}", code, parse_retry_after(resp.headers.get("retry-after")))

    async def _failed(self, d: Delivery, error: str, code: Optional[int], retry_after: Optional[float]) -> None:
        delay = next_delay(self.settings.webhook_schedule, d.attempts + 1, self.settings.webhook_jitter,
                           retry_after)
        if delay is None:
            await self.store.delivery_give_up(d.id, DELIVERY_FAILED,
                                              f"gave up after {d.attempts + 1} attempts; last: {error}", code,
                                              worker=self.worker_id)
            log.warning("outbox: gave up on %s to %s: %s", d.id, d.url, error)
        else:
            await self.store.delivery_retry(d.id, time.time() + delay, error, code, worker=self.worker_id)
            log.info("outbox: %s to %s failed (%s); retry in %.1f s", d.id, d.url, error, delay)
