"""Crash tests: `kill -9` the chain service mid-run, restart it, and check that nothing is lost
or repeated — on SQLite and on a real PostgreSQL server. The model node is a fake server in the
test process (it survives the kill and counts calls); the webhook receiver verifies signatures."""
from __future__ import annotations

import pytest

from chain_service import pg
from chain_service.pg import store_url  # noqa: F401, F811 (a fixture: both stores)
from http_fakes import StepNode, WebhookReceiver, wait_for
from chain_service.service import BASETEN_SECRET, WEBHOOK_SECRET, ServiceProcess
from compound.service.store import open_store, webhook_id_for

pytestmark = pytest.mark.fault


@pytest.fixture
def node():
    n = StepNode(baseten_secret=BASETEN_SECRET).start()
    yield n
    n.stop()


@pytest.fixture
def receiver():
    r = WebhookReceiver(WEBHOOK_SECRET)
    yield r
    r.stop()


def _job(svc, job_id) -> dict:
    with svc.client() as c:
        return c.get(f"/v1/jobs/{job_id}").json()


def _submit(svc, inputs: dict, webhook_url: str, chain: str = "fake_two_step") -> str:
    with svc.client() as c:
        r = c.post(f"/v1/chains/{chain}/async", json={"inputs": inputs, "webhook_url": webhook_url})
        assert r.status_code == 202, r.text
        return r.json()["job_id"]


def test_kill9_mid_run_resumes_from_last_finished_step(store_url, node, receiver, tmp_path):
    receiver.start()
    svc = ServiceProcess(store_url, tmp_path / "svc.log", node.url).start()
    restarted = None
    # "second" stays in flight at the node until the service is dead (no sleep to outlast).
    second_held = node.hold("second")
    try:
        job_id = _submit(svc, {"text": "durable"}, receiver.url + "/hook")
        # Step "first" is journaled and "second" is in flight at the node: now crash.
        wait_for(lambda: node.started["second"] == 1, 15, "second step started")
        assert [t["name"] for t in _job(svc, job_id)["trace"]] == ["first"]
        svc.kill9()
        second_held.set()  # the dead run's call ends unread; the resumed run's call answers at once

        restarted = ServiceProcess(store_url, tmp_path / "svc2.log", node.url).start()
        job = wait_for(lambda: (j := _job(restarted, job_id))["status"] == "succeeded" and j, 60,
                       "job to finish after restart")
        assert job["attempts"] == 2  # claimed again: the dead worker's run counts as interrupted
        assert job["outputs"] == {"first": "DURABLE", "second": "DURABLE", "first_call": 1}
        assert node.runs["first"] == 1  # the finished step was replayed from the store, not re-run
        assert node.started["second"] == 2  # the unfinished one ran again
        wait_for(lambda: receiver.successes(), 15, "webhook")
        wait_for(lambda: _job(restarted, job_id)["webhook"][0]["status"] == "delivered", 10, "delivery recorded")
        assert all(r.verified for r in receiver.requests)
        assert {r.headers["webhook-id"] for r in receiver.requests} == {webhook_id_for(job_id)}
        assert len(receiver.successes()) == 1
    finally:
        svc.stop()
        if restarted:
            restarted.stop()


def test_restart_after_kill9_resumes_at_once_not_at_lease_expiry(store_url, node, receiver, tmp_path):
    """With a 120 s lease, the restarted service sees that the lease holder was a process on
    this host that is gone and resumes the job immediately (it would otherwise wait 120 s)."""
    long_lease = {"COMPOUND_JOB_LEASE_S": "120"}
    svc = ServiceProcess(store_url, tmp_path / "svc.log", node.url, extra_env=long_lease).start()
    restarted = None
    second_held = node.hold("second")
    try:
        job_id = _submit(svc, {"text": "quick"}, receiver.url + "/hook")
        wait_for(lambda: node.started["second"] == 1, 15, "second step started")
        svc.kill9()
        second_held.set()
        restarted = ServiceProcess(store_url, tmp_path / "svc2.log", node.url, extra_env=long_lease).start()
        # 60 s budget < the 120 s lease: finishing at all proves the lease was not waited out
        job = wait_for(lambda: (j := _job(restarted, job_id))["status"] == "succeeded" and j, 60,
                       "job to resume before the lease runs out")
        assert job["attempts"] == 2 and node.runs["first"] == 1 and node.started["second"] == 2
        assert "is gone; resuming it now" in restarted.log()
    finally:
        svc.stop()
        if restarted:
            restarted.stop()


def test_kill9_while_waiting_for_async_callback_does_not_resubmit(store_url, node, receiver, tmp_path):
    """Killed after the async request was submitted (its request id journaled as pending); the
    callback arrives while the service is down (the node keeps retrying, like Baseten). The
    restarted service (same address) waits for that same request instead of submitting again."""
    receiver.start()
    svc = ServiceProcess(store_url, tmp_path / "svc.log", node.url).start()
    restarted = None
    # The node answers the async request only once the service is dead (no race with a sleep).
    callback_held = node.hold("second")
    try:
        job_id = _submit(svc, {"text": "cb"}, receiver.url + "/hook", chain="fake_async")
        wait_for(lambda: node.async_submits["second"] == 1, 15, "async request submitted")
        wait_for(lambda: _job(svc, job_id).get("pending"), 15, "pending request journaled")
        svc.kill9()
        callback_held.set()  # the callback is sent while the service is down; the node retries it
        restarted = ServiceProcess(store_url, tmp_path / "svc2.log", node.url, port=svc.port).start()
        job = wait_for(lambda: (j := _job(restarted, job_id))["status"] == "succeeded" and j, 60,
                       "job to finish after restart")
        assert job["outputs"]["second"] == "CB"
        assert node.async_submits["second"] == 1 and node.runs["first"] == 1
        wait_for(lambda: receiver.successes(), 15, "webhook")
        assert {r.headers["webhook-id"] for r in receiver.requests} == {webhook_id_for(job_id)}
    finally:
        svc.stop()
        if restarted:
            restarted.stop()


def test_kill9_with_undelivered_webhook_keeps_webhook_id(store_url, node, receiver, tmp_path):
    """The job finished while its receiver was down; the service dies; after the restart the
    outbox row (written with the job's final state) is delivered under the same webhook-id."""
    svc = ServiceProcess(store_url, tmp_path / "svc.log", node.url).start()
    restarted = None
    try:
        job_id = _submit(svc, {"text": "outbox"}, receiver.url + "/hook")  # receiver not listening
        wait_for(lambda: (j := _job(svc, job_id))["status"] == "succeeded" and j["webhook"]
                 and j["webhook"][0]["attempts"] >= 1, 15, "finished job with a failed delivery")
        svc.kill9()
        receiver.start()
        restarted = ServiceProcess(store_url, tmp_path / "svc2.log", node.url).start()
        wait_for(lambda: receiver.successes(), 20, "webhook after restart")
        assert {r.headers["webhook-id"] for r in receiver.requests} == {webhook_id_for(job_id)}
        assert all(r.verified for r in receiver.requests)
        assert receiver.requests[0].payload["data"]["outputs"]["first"] == "OUTBOX"
        assert node.runs["first"] == 1 and node.runs["second"] == 1  # nothing re-run
    finally:
        svc.stop()
        if restarted:
            restarted.stop()


def test_postgres_replica_takes_over_stalled_lease(node, receiver, tmp_path):
    """Two replicas share PostgreSQL; the one running the job is killed; the other one (never
    restarted) re-claims the job once the lease expires and finishes it."""
    url = pg.fresh_database_url()
    receiver.start()
    a = ServiceProcess(url, tmp_path / "a.log", node.url).launch()
    b = ServiceProcess(url, tmp_path / "b.log", node.url).launch()
    a.wait_ready()
    b.wait_ready()
    second_held = node.hold("second")  # in flight until the replica running it is dead
    try:
        job_id = _submit(a, {"text": "replica"}, receiver.url + "/hook")
        wait_for(lambda: node.started["second"] == 1, 15, "second step started")
        store = open_store(url)
        try:
            owner = store.get_job(job_id).lease_owner
        finally:
            store.close()
        victim, survivor = (a, b) if f"-{a.proc.pid}-" in owner else (b, a)
        assert f"-{victim.proc.pid}-" in owner
        victim.kill9()
        second_held.set()
        job = wait_for(lambda: (j := _job(survivor, job_id))["status"] == "succeeded" and j, 60,
                       "survivor to finish the job")
        assert job["attempts"] == 2 and node.runs["first"] == 1
        wait_for(lambda: receiver.successes(), 15, "webhook")
        assert {r.headers["webhook-id"] for r in receiver.requests} == {webhook_id_for(job_id)}
    finally:
        a.stop()
        b.stop()


def test_sigterm_hands_running_job_back_for_immediate_resume(node, receiver, tmp_path):
    url = f"sqlite:///{tmp_path / 'store.db'}"
    receiver.start()
    svc = ServiceProcess(url, tmp_path / "svc.log", node.url, extra_env={"COMPOUND_JOB_LEASE_S": "600"}).start()
    restarted = None
    second_held = node.hold("second")  # still in flight when the SIGTERM arrives
    try:
        job_id = _submit(svc, {"text": "term"}, receiver.url + "/hook")
        wait_for(lambda: node.started["second"] == 1, 15, "second step started")
        svc.stop()  # SIGTERM: graceful
        second_held.set()
        store = open_store(url)
        try:
            job = store.get_job(job_id)
        finally:
            store.close()
        assert job.status == "running" and job.lease_expires_at == 0  # released, not left to expire
        # With a 600 s lease, only the release lets the restarted service resume it now.
        restarted = ServiceProcess(url, tmp_path / "svc2.log", node.url,
                                   extra_env={"COMPOUND_JOB_LEASE_S": "600"}).start()
        done = wait_for(lambda: (j := _job(restarted, job_id))["status"] == "succeeded" and j, 60, "resumed job")
        # resumed without re-running "first"; the graceful hand-back did not count as an attempt
        assert done["attempts"] == 1 and node.runs["first"] == 1
    finally:
        svc.stop()
        if restarted:
            restarted.stop()
