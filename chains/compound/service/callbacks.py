"""In-process rendezvous between a waiting step and the webhook/approval that wakes it.

A step that submitted an async request waits on `expect(request_id)`; the HTTP handler that
receives the callback calls `resolve(request_id, body)`. The callback can arrive before the
step starts waiting (a fast model answers before `async_predict` has even returned), so early
payloads are kept until someone expects them. `resolve` may be called from any thread: the
future is completed on the loop that created it.
"""
from __future__ import annotations

import asyncio
import threading
import time
from collections import OrderedDict


class CallbackRegistry:
    def __init__(self, max_early: int = 10_000, early_ttl_s: float = 3600.0):
        self._lock = threading.Lock()
        self._waiting: dict[str, asyncio.Future] = {}
        # key -> (payload, received_at); bounded so unclaimed callbacks cannot grow forever
        self._early: OrderedDict[str, tuple[dict, float]] = OrderedDict()
        self._max_early = max_early
        self._early_ttl_s = early_ttl_s

    def expect(self, key: str) -> asyncio.Future:
        """Future resolved with the payload for `key` (immediately if it already arrived)."""
        loop = asyncio.get_running_loop()
        with self._lock:
            existing = self._waiting.get(key)
            if existing is not None and not existing.done():
                return existing
            future = loop.create_future()
            early = self._early.pop(key, None)
            if early is not None:
                future.set_result(early[0])
            else:
                self._waiting[key] = future
                future.add_done_callback(lambda f, k=key: self._forget(k, f))
            return future

    def _forget(self, key: str, future: asyncio.Future) -> None:
        with self._lock:
            if self._waiting.get(key) is future:
                del self._waiting[key]

    def resolve(self, key: str, payload: dict) -> bool:
        """Deliver `payload` to whoever waits on `key`.

        Returns True when a waiter was woken, False when nobody waits yet (the payload is
        then kept for a later `expect`; a second early payload for the same key is ignored).
        """
        with self._lock:
            future = self._waiting.pop(key, None)
            if future is None or future.done():
                self._prune_early()
                self._early.setdefault(key, (payload, time.monotonic()))
                return False
        loop = future.get_loop()

        def _set() -> None:
            if not future.done():
                future.set_result(payload)

        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            _set()
        else:
            loop.call_soon_threadsafe(_set)
        return True

    def waiting(self) -> list[str]:
        with self._lock:
            return [k for k, f in self._waiting.items() if not f.done()]

    def _prune_early(self) -> None:
        now = time.monotonic()
        while self._early:
            key, (_, at) = next(iter(self._early.items()))
            if len(self._early) >= self._max_early or now - at > self._early_ttl_s:
                self._early.popitem(last=False)
            else:
                break
