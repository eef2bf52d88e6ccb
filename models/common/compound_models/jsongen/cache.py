"""Compiled-guide cache: bounded LRU, thread-safe, single-flight, compile under a time budget.

N concurrent first requests for one schema share one compile (one Future per key in flight).
Compiles run on a small worker pool; a caller waits at most `timeout_s` and then gets
`CompileTimeout` — the request thread is freed even though the compile thread cannot be
killed. A compile that finishes late is still cached, so a retry is a hit. Compile failures
are not cached: every waiter of that flight gets the same exception.
"""
from __future__ import annotations

import threading
import time
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Any, Callable, Generic, TypeVar

T = TypeVar("T")


class CompileTimeout(Exception):
    def __init__(self, key: str, timeout_s: float):
        self.key, self.timeout_s = key, timeout_s
        super().__init__(f"schema compile exceeded the {timeout_s:g}s budget")


@dataclass(frozen=True)
class Lookup(Generic[T]):
    value: T
    hit: bool  # True: found compiled; False: this request waited for (or joined) a compile
    compile_ms: float  # how long the compile of this entry took


class GuideCache(Generic[T]):
    def __init__(self, compile_fn: Callable[[Any], T], maxsize: int = 256,
                 timeout_s: float = 10.0, workers: int = 2):
        if maxsize < 1:
            raise ValueError("maxsize must be >= 1")
        self._compile_fn = compile_fn
        self._maxsize = maxsize
        self._timeout_s = timeout_s
        self._lock = threading.Lock()
        self._entries: OrderedDict[str, tuple[T, float]] = OrderedDict()
        self._inflight: dict[str, Future] = {}
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="json-compile")
        self.compiles = 0  # compile_fn invocations (what the single-flight test counts)
        self.hits = 0
        self.misses = 0

    def get(self, key: str, schema: Any, timeout_s: float | None = None) -> Lookup[T]:
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                self._entries.move_to_end(key)
                self.hits += 1
                return Lookup(entry[0], True, entry[1])
            self.misses += 1
            future = self._inflight.get(key)
            if future is None:
                future = self._pool.submit(self._compile, key, schema)
                self._inflight[key] = future
        budget = self._timeout_s if timeout_s is None else timeout_s
        try:
            value, compile_ms = future.result(timeout=budget)
        except FutureTimeout:
            raise CompileTimeout(key, budget) from None
        return Lookup(value, False, compile_ms)

    def _compile(self, key: str, schema: Any) -> tuple[T, float]:
        started = time.perf_counter()
        try:
            with self._lock:
                self.compiles += 1
            value = self._compile_fn(schema)
        except BaseException:
            with self._lock:
                self._inflight.pop(key, None)
            raise
        compile_ms = (time.perf_counter() - started) * 1e3
        with self._lock:
            self._entries[key] = (value, compile_ms)
            self._entries.move_to_end(key)
            while len(self._entries) > self._maxsize:
                self._entries.popitem(last=False)
            self._inflight.pop(key, None)
        return value, compile_ms

    def __contains__(self, key: str) -> bool:
        with self._lock:
            return key in self._entries

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
