"""PostgreSQL backend (psycopg 3) for several service replicas sharing one database.

Claims use `SELECT ... FOR UPDATE SKIP LOCKED` inside a short transaction that stamps a lease
(owner + expiry) on the row; the row lock is released at commit, the lease is what keeps other
replicas off while the job runs. A replica that dies stops renewing; once `lease_expires_at`
passes, any replica's next claim picks the job up again (stalled-lease recovery)."""
from __future__ import annotations

import contextlib
import queue
import threading

import psycopg

from compound.service.store.sql import SCHEMA, SQLStore


class PostgresStore(SQLStore):
    LOCK_CLAUSE = "FOR UPDATE SKIP LOCKED"

    def __init__(self, url: str, pool_size: int = 4):
        self.url = url
        self._pool: queue.LifoQueue[psycopg.Connection] = queue.LifoQueue()
        self._all: list[psycopg.Connection] = []
        self._pool_lock = threading.Lock()
        self._pool_size = pool_size
        conn = self._connect()
        with conn.transaction():
            # Serialize schema creation across replicas starting at the same time.
            conn.execute("SELECT pg_advisory_xact_lock(74657301)")
            conn.execute(SCHEMA.format(real="DOUBLE PRECISION"))
        self._pool.put(conn)

    def _connect(self) -> psycopg.Connection:
        conn = psycopg.connect(self.url, autocommit=True)
        with self._pool_lock:
            self._all.append(conn)
        return conn

    def _integrity_errors(self):
        return (psycopg.errors.UniqueViolation,)

    @contextlib.contextmanager
    def _checkout(self):
        try:
            conn = self._pool.get_nowait()
        except queue.Empty:
            with self._pool_lock:
                grow = len(self._all) < self._pool_size
            conn = self._connect() if grow else self._pool.get(timeout=30)
        try:
            if conn.closed or conn.broken:
                conn = self._connect()
            yield conn
        finally:
            if not conn.closed:
                self._pool.put(conn)

    @contextlib.contextmanager
    def _tx(self, immediate: bool = False):
        with self._checkout() as conn, conn.transaction(), conn.cursor() as cur:
            yield _QmarkCursor(cur)

    def close(self) -> None:
        with self._pool_lock:
            for conn in self._all:
                conn.close()
            self._all.clear()


class _QmarkCursor:
    """Lets the shared SQL keep `?` placeholders (psycopg wants %s)."""

    def __init__(self, cur):
        self._cur = cur

    def execute(self, sql: str, params=()):
        self._cur.execute(sql.replace("?", "%s"), params)

    def fetchone(self):
        return self._cur.fetchone()

    def fetchall(self):
        return self._cur.fetchall()

    @property
    def rowcount(self) -> int:
        return self._cur.rowcount
