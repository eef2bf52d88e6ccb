"""SQLite backend: the embedded default (one service process; WAL so readers never wait on the
writer). stdlib sqlite3, one connection guarded by a lock, called from worker threads
(AsyncStore). `synchronous=FULL`: a step is on disk before record_step returns."""
from __future__ import annotations

import contextlib
import sqlite3
import threading
from pathlib import Path

from compound.service.store.sql import SCHEMA, SQLStore


class SQLiteStore(SQLStore):
    def __init__(self, url: str):
        self.url = url
        path = url.removeprefix("sqlite:").removeprefix("//")
        # sqlite:///abs/path -> "/abs/path"; sqlite:///:memory: -> "/:memory:"
        if path in ("/:memory:", ":memory:"):
            path = ":memory:"
        else:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.RLock()
        # isolation_level=None: we issue BEGIN/COMMIT ourselves (BEGIN IMMEDIATE for claims,
        # so two processes sharing a file cannot claim the same row).
        self._conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=FULL")
        self._conn.execute("PRAGMA busy_timeout=30000")
        with self._lock:
            self._conn.executescript(SCHEMA.format(real="REAL"))

    def _integrity_errors(self):
        return (sqlite3.IntegrityError,)

    @contextlib.contextmanager
    def _tx(self, immediate: bool = False):
        with self._lock:
            cur = self._conn.cursor()
            cur.execute("BEGIN IMMEDIATE" if immediate else "BEGIN")
            try:
                yield cur
            except BaseException:
                cur.execute("ROLLBACK")
                raise
            else:
                cur.execute("COMMIT")
            finally:
                cur.close()

    def close(self) -> None:
        with self._lock:
            self._conn.close()
