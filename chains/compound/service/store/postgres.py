"""PostgreSQL backend (psycopg 3) for several service replicas sharing one database.

Claims use `SELECT ... FOR UPDATE SKIP LOCKED` inside a short transaction that stamps a lease
(owner + expiry) on the row; the row lock is released at commit, the lease is what keeps other
replicas off while the job runs. A replica that dies stops renewing; once `lease_expires_at`
passes, any replica's next claim picks the job up again (stalled-lease recovery)."""
from __future__ import annotations

import contextlib
import threading
import time

import psycopg
import psycopg.conninfo
import psycopg.pq

from compound.service.store.sql import SCHEMA, SQLStore


class PoolTimeout(psycopg.OperationalError):
    """Every pooled connection stayed checked out for the whole checkout timeout."""


class PostgresStore(SQLStore):
    LOCK_CLAUSE = "FOR UPDATE SKIP LOCKED"
    CONNECT_TIMEOUT_S = 10  # unless the URL sets connect_timeout

    def __init__(self, url: str, pool_size: int = 4, checkout_timeout_s: float = 30.0):
        self.url = url
        self._pool_size = pool_size
        self._checkout_timeout_s = checkout_timeout_s
        self._connect_kwargs: dict = {"autocommit": True}
        given = psycopg.conninfo.conninfo_to_dict(url)
        if "connect_timeout" not in given:
            self._connect_kwargs["connect_timeout"] = self.CONNECT_TIMEOUT_S
        # A server that vanishes mid-query (host down, network partition) sends no FIN: without
        # TCP keepalives a call could wait for the kernel's ~2 h default. With these, a dead
        # peer is noticed in ~30 s and the call fails (the pool then replaces the connection).
        for key, value in {"keepalives": 1, "keepalives_idle": 10, "keepalives_interval": 5,
                           "keepalives_count": 3, "tcp_user_timeout": 30_000}.items():
            if key not in given:
                self._connect_kwargs[key] = value
        # The pool: `_idle` holds connections ready for use (LIFO); `_size` counts the slots
        # taken (connections open, idle or checked out, plus connects in progress). A connection
        # that breaks (server restart, failover, terminated backend) is closed and its slot freed,
        # so the pool refills with live connections instead of running dry.
        self._cond = threading.Condition()
        self._idle: list[psycopg.Connection] = []
        self._open: set[psycopg.Connection] = set()
        self._size = 0
        self._closed = False
        conn, _ = self._acquire()
        try:
            with conn.transaction():
                # Serialize schema creation across replicas starting at the same time.
                conn.execute("SELECT pg_advisory_xact_lock(74657301)")
                conn.execute(SCHEMA.format(real="DOUBLE PRECISION"))
        finally:
            self._release(conn)

    def _integrity_errors(self):
        return (psycopg.errors.UniqueViolation,)

    def _acquire(self) -> tuple[psycopg.Connection, bool]:
        """(connection, fresh): an idle pooled one, else a new one while the pool has room,
        else wait for one to come back. A failed connect raises at once (database down)."""
        deadline = time.monotonic() + self._checkout_timeout_s
        with self._cond:
            while True:
                if self._closed:
                    raise psycopg.OperationalError("the store is closed")
                if self._idle:
                    conn = self._idle.pop()
                    if conn.closed:
                        self._forget(conn)
                        continue
                    return conn, False
                if self._size < self._pool_size:
                    self._size += 1
                    break
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise PoolTimeout(f"no PostgreSQL connection free within {self._checkout_timeout_s:g} s "
                                      f"(pool of {self._pool_size}, all in use)")
                self._cond.wait(remaining)
        try:
            conn = psycopg.connect(self.url, **self._connect_kwargs)
        except BaseException:
            with self._cond:
                self._size -= 1
                self._cond.notify()
            raise
        with self._cond:
            self._open.add(conn)
        return conn, True

    def _forget(self, conn: psycopg.Connection) -> None:
        """Drop a dead connection from the pool (caller holds _cond)."""
        if conn in self._open:
            self._open.discard(conn)
            self._size -= 1
            self._cond.notify()

    def _release(self, conn: psycopg.Connection) -> None:
        healthy = not conn.closed and conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        with self._cond:
            if healthy and not self._closed:
                self._idle.append(conn)
                self._cond.notify()
                return
            self._forget(conn)
        conn.close()

    def _begin(self) -> tuple[psycopg.Connection, psycopg.Transaction]:
        """A pooled connection inside a new transaction. A connection that died while idle
        (the server restarted or cut it) fails at BEGIN, before any of our statements ran:
        it is dropped and the next one tried, a freshly opened one last."""
        while True:
            conn, fresh = self._acquire()
            tx = conn.transaction()
            try:
                tx.__enter__()
            except BaseException as exc:
                self._release(conn)
                if fresh or not conn.closed or not isinstance(exc, psycopg.OperationalError):
                    raise
                continue
            return conn, tx

    @contextlib.contextmanager
    def _tx(self, immediate: bool = False):
        conn, tx = self._begin()
        with contextlib.ExitStack() as stack:
            stack.callback(self._release, conn)  # last: after commit/rollback
            stack.push(tx)  # entered in _begin; commits, or rolls back on error
            cur = stack.enter_context(conn.cursor())
            yield _QmarkCursor(cur)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            conns = list(self._open)
            self._open.clear()
            self._idle.clear()
            self._size = 0
            self._cond.notify_all()
        for conn in conns:
            conn.close()


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
