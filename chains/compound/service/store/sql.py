"""The SQL both backends share. Subclasses supply a transaction (`_tx`), the DDL types and the
row-lock clause; SQL here is written with `?` placeholders (PostgreSQL's subclass rewrites them).
JSON is stored as TEXT so the two backends keep one schema."""
from __future__ import annotations

import contextlib
import json
import time
from typing import Any, Iterator, Optional

from compound.service.store.base import (
    DELIVERY_DELIVERED, DELIVERY_PENDING, JOB_QUEUED, JOB_RUNNING, TERMINAL_JOB_STATES,
    Delivery, IdempotencyConflict, Job, OutboxMessage, Pending, Store, new_job_id, webhook_id_for,
)

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    chain TEXT NOT NULL,
    inputs TEXT NOT NULL,
    status TEXT NOT NULL,
    webhook_url TEXT,
    idempotency_key TEXT UNIQUE,
    request_hash TEXT,
    result TEXT,
    error TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    lease_owner TEXT,
    lease_expires_at {real},
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    created_at {real} NOT NULL,
    updated_at {real} NOT NULL
);
CREATE INDEX IF NOT EXISTS jobs_claim ON jobs (status, lease_expires_at, created_at);
CREATE TABLE IF NOT EXISTS steps (
    job_id TEXT NOT NULL,
    step TEXT NOT NULL,
    record TEXT NOT NULL,
    updated_at {real} NOT NULL,
    PRIMARY KEY (job_id, step)
);
CREATE TABLE IF NOT EXISTS pending (
    job_id TEXT NOT NULL,
    step TEXT NOT NULL,
    kind TEXT NOT NULL,
    key TEXT NOT NULL,
    created_at {real} NOT NULL,
    PRIMARY KEY (job_id, step)
);
CREATE INDEX IF NOT EXISTS pending_key ON pending (kind, key);
CREATE TABLE IF NOT EXISTS events (
    kind TEXT NOT NULL,
    key TEXT NOT NULL,
    payload TEXT NOT NULL,
    received_at {real} NOT NULL,
    PRIMARY KEY (kind, key)
);
CREATE TABLE IF NOT EXISTS outbox (
    id TEXT PRIMARY KEY,
    job_id TEXT NOT NULL,
    url TEXT NOT NULL,
    payload TEXT NOT NULL,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at {real} NOT NULL,
    last_error TEXT,
    last_status_code INTEGER,
    lease_owner TEXT,
    lease_expires_at {real},
    created_at {real} NOT NULL,
    delivered_at {real}
);
CREATE INDEX IF NOT EXISTS outbox_due ON outbox (status, next_attempt_at);
CREATE INDEX IF NOT EXISTS outbox_job ON outbox (job_id);
CREATE TABLE IF NOT EXISTS disabled_endpoints (
    url TEXT PRIMARY KEY,
    reason TEXT,
    disabled_at {real} NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""

JOB_COLS = ("id, chain, inputs, status, webhook_url, idempotency_key, request_hash, result, error, "
            "attempts, lease_owner, lease_expires_at, cancel_requested, created_at, updated_at")
DELIVERY_COLS = ("id, job_id, url, payload, status, attempts, next_attempt_at, created_at, last_error, "
                 "last_status_code, delivered_at")


def _dumps(value: Any) -> Optional[str]:
    return None if value is None else json.dumps(value, separators=(",", ":"))


def _loads(text: Optional[str]) -> Any:
    return None if text is None else json.loads(text)


def _job(row) -> Job:
    (id_, chain, inputs, status, webhook_url, key, rhash, result, error, attempts, owner, expires,
     cancel, created, updated) = row
    return Job(id=id_, chain=chain, inputs=_loads(inputs), status=status, webhook_url=webhook_url,
               idempotency_key=key, request_hash=rhash, result=_loads(result), error=error,
               attempts=attempts, lease_owner=owner, lease_expires_at=expires,
               cancel_requested=bool(cancel), created_at=created, updated_at=updated)


def _delivery(row) -> Delivery:
    (id_, job_id, url, payload, status, attempts, next_at, created, last_error, code, delivered) = row
    return Delivery(id=id_, job_id=job_id, url=url, payload=_loads(payload), status=status,
                    attempts=attempts, next_attempt_at=next_at, created_at=created,
                    last_error=last_error, last_status_code=code, delivered_at=delivered)


class SQLStore(Store):
    LOCK_CLAUSE = ""  # PostgreSQL: "FOR UPDATE SKIP LOCKED"

    @contextlib.contextmanager
    def _tx(self, immediate: bool = False) -> Iterator[Any]:
        """A cursor inside one transaction; committed on exit, rolled back on error.
        `immediate`: take the write lock up front (SQLite claim paths)."""
        raise NotImplementedError

    def _integrity_errors(self) -> tuple[type[BaseException], ...]:
        raise NotImplementedError

    # -- jobs
    def create_job(self, chain, inputs, *, webhook_url=None, idempotency_key=None, req_hash=None,
                   job_id=None):
        now = time.time()
        job_id = job_id or new_job_id()
        try:
            with self._tx(immediate=True) as cur:
                if idempotency_key is not None:
                    existing = self._job_by_key(cur, idempotency_key, req_hash)
                    if existing is not None:
                        return existing, False
                cur.execute(
                    f"INSERT INTO jobs ({JOB_COLS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                    (job_id, chain, _dumps(inputs), JOB_QUEUED, webhook_url, idempotency_key, req_hash,
                     None, None, 0, None, None, 0, now, now))
        except self._integrity_errors():
            if idempotency_key is None:
                raise
            # Another replica inserted the same key between our SELECT and INSERT.
            with self._tx() as cur:
                existing = self._job_by_key(cur, idempotency_key, req_hash)
            if existing is None:
                raise
            return existing, False
        return self.get_job(job_id), True

    def _job_by_key(self, cur, key: str, req_hash: Optional[str]) -> Optional[Job]:
        cur.execute(f"SELECT {JOB_COLS} FROM jobs WHERE idempotency_key = ?", (key,))
        row = cur.fetchone()
        if row is None:
            return None
        existing = _job(row)
        if existing.request_hash != req_hash:
            raise IdempotencyConflict(key, existing.id)
        return existing

    def get_job(self, job_id):
        with self._tx() as cur:
            cur.execute(f"SELECT {JOB_COLS} FROM jobs WHERE id = ?", (job_id,))
            row = cur.fetchone()
        return None if row is None else _job(row)

    def list_jobs(self, status=None, limit=100):
        with self._tx() as cur:
            if status:
                cur.execute(f"SELECT {JOB_COLS} FROM jobs WHERE status = ? ORDER BY created_at DESC LIMIT ?",
                            (status, limit))
            else:
                cur.execute(f"SELECT {JOB_COLS} FROM jobs ORDER BY created_at DESC LIMIT ?", (limit,))
            return [_job(r) for r in cur.fetchall()]

    def claim_job(self, worker, lease_s, now=None, exclude=()):
        now = time.time() if now is None else now
        exclude = tuple(exclude)
        not_excluded = f"AND id NOT IN ({', '.join('?' * len(exclude))}) " if exclude else ""
        with self._tx(immediate=True) as cur:
            # Queued jobs, and running jobs whose worker stopped renewing (died): oldest first.
            cur.execute(
                f"SELECT id FROM jobs WHERE (status = ? OR (status = ? AND lease_expires_at < ?)) "
                f"{not_excluded}ORDER BY created_at LIMIT 1 {self.LOCK_CLAUSE}",
                (JOB_QUEUED, JOB_RUNNING, now, *exclude))
            row = cur.fetchone()
            if row is None:
                return None
            cur.execute(
                "UPDATE jobs SET status = ?, lease_owner = ?, lease_expires_at = ?, "
                "attempts = attempts + 1, updated_at = ? WHERE id = ?",
                (JOB_RUNNING, worker, now + lease_s, now, row[0]))
            cur.execute(f"SELECT {JOB_COLS} FROM jobs WHERE id = ?", (row[0],))
            return _job(cur.fetchone())

    def renew_lease(self, job_id, worker, lease_s):
        now = time.time()
        with self._tx() as cur:
            cur.execute("UPDATE jobs SET lease_expires_at = ?, updated_at = ? "
                        "WHERE id = ? AND lease_owner = ? AND status = ?",
                        (now + lease_s, now, job_id, worker, JOB_RUNNING))
            return cur.rowcount == 1

    def release_job(self, job_id, worker):
        with self._tx() as cur:
            # A graceful hand-back (SIGTERM, deploy) is not a crashed run: give back the claim
            # it counted, so restarts never exhaust max_job_claims for a healthy job.
            cur.execute("UPDATE jobs SET lease_expires_at = 0, attempts = attempts - 1, updated_at = ? "
                        "WHERE id = ? AND lease_owner = ? AND status = ?",
                        (time.time(), job_id, worker, JOB_RUNNING))
            return cur.rowcount == 1

    def expire_lease(self, job_id, worker):
        with self._tx() as cur:
            cur.execute("UPDATE jobs SET lease_expires_at = 0, updated_at = ? "
                        "WHERE id = ? AND lease_owner = ? AND status = ?",
                        (time.time(), job_id, worker, JOB_RUNNING))
            return cur.rowcount == 1

    def finish_job(self, job_id, worker, status, *, result=None, error=None, outbox=None):
        assert status in TERMINAL_JOB_STATES, status
        now = time.time()
        with self._tx(immediate=True) as cur:
            if worker is None:
                cur.execute(
                    "UPDATE jobs SET status = ?, result = ?, error = ?, lease_owner = NULL, "
                    "lease_expires_at = NULL, updated_at = ? WHERE id = ? AND status = ?",
                    (status, _dumps(result), error, now, job_id, JOB_QUEUED))
            else:
                cur.execute(
                    "UPDATE jobs SET status = ?, result = ?, error = ?, lease_owner = NULL, "
                    "lease_expires_at = NULL, updated_at = ? WHERE id = ? AND status = ? AND lease_owner = ?",
                    (status, _dumps(result), error, now, job_id, JOB_RUNNING, worker))
            if cur.rowcount != 1:
                return False
            if outbox is not None:
                self._insert_outbox(cur, job_id, outbox, now)
            return True

    def _insert_outbox(self, cur, job_id: str, msg: OutboxMessage, now: float) -> None:
        # ON CONFLICT DO NOTHING: the webhook-id is derived from the job, so a second insert
        # for the same job (which the job status guard already prevents) could never re-send.
        cur.execute(
            "INSERT INTO outbox (id, job_id, url, payload, status, attempts, next_attempt_at, created_at) "
            "VALUES (?,?,?,?,?,?,?,?) ON CONFLICT (id) DO NOTHING",
            (msg.id or webhook_id_for(job_id), job_id, msg.url, _dumps(msg.payload), DELIVERY_PENDING,
             0, now, now))

    def request_cancel(self, job_id):
        with self._tx() as cur:
            cur.execute("UPDATE jobs SET cancel_requested = 1, updated_at = ? WHERE id = ?",
                        (time.time(), job_id))
        return self.get_job(job_id)

    # -- steps
    def record_step(self, job_id, step, record):
        with self._tx() as cur:
            cur.execute(
                "INSERT INTO steps (job_id, step, record, updated_at) VALUES (?,?,?,?) "
                "ON CONFLICT (job_id, step) DO UPDATE SET record = excluded.record, "
                "updated_at = excluded.updated_at",
                (job_id, step, _dumps(record), time.time()))

    def get_steps(self, job_id):
        with self._tx() as cur:
            cur.execute("SELECT step, record FROM steps WHERE job_id = ? ORDER BY updated_at", (job_id,))
            return {step: _loads(rec) for step, rec in cur.fetchall()}

    def note_pending(self, job_id, step, kind, key):
        with self._tx() as cur:
            cur.execute(
                "INSERT INTO pending (job_id, step, kind, key, created_at) VALUES (?,?,?,?,?) "
                "ON CONFLICT (job_id, step) DO UPDATE SET kind = excluded.kind, key = excluded.key",
                (job_id, step, kind, key, time.time()))

    def get_pending(self, job_id):
        with self._tx() as cur:
            cur.execute("SELECT job_id, step, kind, key, created_at FROM pending WHERE job_id = ? "
                        "ORDER BY created_at", (job_id,))
            return [Pending(*r) for r in cur.fetchall()]

    def find_pending(self, kind, key):
        with self._tx() as cur:
            cur.execute("SELECT job_id, step, kind, key, created_at FROM pending WHERE kind = ? AND key = ? "
                        "ORDER BY created_at DESC LIMIT 1", (kind, key))
            row = cur.fetchone()
        return None if row is None else Pending(*row)

    # -- events
    def put_event(self, kind, key, payload):
        with self._tx() as cur:
            cur.execute("INSERT INTO events (kind, key, payload, received_at) VALUES (?,?,?,?) "
                        "ON CONFLICT (kind, key) DO NOTHING",
                        (kind, key, _dumps(payload), time.time()))
            return cur.rowcount == 1

    def get_event(self, kind, key):
        with self._tx() as cur:
            cur.execute("SELECT payload FROM events WHERE kind = ? AND key = ?", (kind, key))
            row = cur.fetchone()
        return None if row is None else _loads(row[0])

    # -- outbox
    def get_delivery(self, delivery_id):
        with self._tx() as cur:
            cur.execute(f"SELECT {DELIVERY_COLS} FROM outbox WHERE id = ?", (delivery_id,))
            row = cur.fetchone()
        return None if row is None else _delivery(row)

    def deliveries_for_job(self, job_id):
        with self._tx() as cur:
            cur.execute(f"SELECT {DELIVERY_COLS} FROM outbox WHERE job_id = ? ORDER BY created_at", (job_id,))
            return [_delivery(r) for r in cur.fetchall()]

    def claim_deliveries(self, worker, lease_s, limit=10, now=None, exclude=()):
        now = time.time() if now is None else now
        exclude = tuple(exclude)
        not_excluded = f"AND id NOT IN ({', '.join('?' * len(exclude))}) " if exclude else ""
        with self._tx(immediate=True) as cur:
            cur.execute(
                f"SELECT id FROM outbox WHERE status = ? AND next_attempt_at <= ? "
                f"AND (lease_expires_at IS NULL OR lease_expires_at < ?) {not_excluded}"
                f"ORDER BY next_attempt_at LIMIT ? {self.LOCK_CLAUSE}",
                (DELIVERY_PENDING, now, now, *exclude, limit))
            ids = [r[0] for r in cur.fetchall()]
            out = []
            for id_ in ids:
                cur.execute("UPDATE outbox SET lease_owner = ?, lease_expires_at = ? WHERE id = ?",
                            (worker, now + lease_s, id_))
                cur.execute(f"SELECT {DELIVERY_COLS} FROM outbox WHERE id = ?", (id_,))
                out.append(_delivery(cur.fetchone()))
            return out

    @staticmethod
    def _owned(worker: Optional[str]) -> tuple[str, tuple]:
        """SQL + params restricting an outcome update to the attempt's lease holder."""
        return (" AND lease_owner = ?", (worker,)) if worker is not None else ("", ())

    def delivery_succeeded(self, delivery_id, status_code, *, worker=None):
        owned, owner = self._owned(worker)
        with self._tx() as cur:
            cur.execute("UPDATE outbox SET status = ?, attempts = attempts + 1, last_status_code = ?, "
                        "last_error = NULL, delivered_at = ?, lease_owner = NULL, lease_expires_at = NULL "
                        f"WHERE id = ?{owned}", (DELIVERY_DELIVERED, status_code, time.time(), delivery_id, *owner))
            return cur.rowcount == 1

    def delivery_retry(self, delivery_id, next_attempt_at, error, status_code=None, *, worker=None):
        owned, owner = self._owned(worker)
        with self._tx() as cur:
            cur.execute("UPDATE outbox SET attempts = attempts + 1, next_attempt_at = ?, last_error = ?, "
                        f"last_status_code = ?, lease_owner = NULL, lease_expires_at = NULL WHERE id = ?{owned}",
                        (next_attempt_at, error, status_code, delivery_id, *owner))
            return cur.rowcount == 1

    def delivery_give_up(self, delivery_id, status, error, status_code=None, *, worker=None):
        owned, owner = self._owned(worker)
        with self._tx() as cur:
            cur.execute("UPDATE outbox SET status = ?, attempts = attempts + 1, last_error = ?, "
                        f"last_status_code = ?, lease_owner = NULL, lease_expires_at = NULL WHERE id = ?{owned}",
                        (status, error, status_code, delivery_id, *owner))
            return cur.rowcount == 1

    def redeliver(self, job_id, url, payload):
        now = time.time()
        did = webhook_id_for(job_id)
        with self._tx(immediate=True) as cur:
            cur.execute("SELECT url FROM outbox WHERE id = ?", (did,))
            row = cur.fetchone()
            if row is None:
                if url is None or payload is None:
                    return None
                self._insert_outbox(cur, job_id, OutboxMessage(url=url, payload=payload, id=did), now)
                target = url
            else:
                target = row[0]
                cur.execute("UPDATE outbox SET status = ?, attempts = 0, next_attempt_at = ?, last_error = NULL, "
                            "lease_owner = NULL, lease_expires_at = NULL, delivered_at = NULL WHERE id = ?",
                            (DELIVERY_PENDING, now, did))
            cur.execute("DELETE FROM disabled_endpoints WHERE url = ?", (target,))
        return self.get_delivery(did)

    def disable_endpoint(self, url, reason):
        with self._tx() as cur:
            cur.execute("INSERT INTO disabled_endpoints (url, reason, disabled_at) VALUES (?,?,?) "
                        "ON CONFLICT (url) DO UPDATE SET reason = excluded.reason",
                        (url, reason, time.time()))

    def endpoint_disabled(self, url):
        with self._tx() as cur:
            cur.execute("SELECT 1 FROM disabled_endpoints WHERE url = ?", (url,))
            return cur.fetchone() is not None

    # -- meta
    def get_meta(self, key):
        with self._tx() as cur:
            cur.execute("SELECT value FROM meta WHERE key = ?", (key,))
            row = cur.fetchone()
        return None if row is None else row[0]

    def set_meta_if_absent(self, key, value):
        with self._tx() as cur:
            cur.execute("INSERT INTO meta (key, value) VALUES (?,?) ON CONFLICT (key) DO NOTHING", (key, value))
        return self.get_meta(key)
