"""The chain service's HTTP API over real HTTP: the service runs as `python -m compound.service`
(SQLite store in tmp), its model node is a fake node server (GPU models can't run here; the fake
lets the tests count calls and inject failures), webhooks go to a real local receiver that
verifies Standard Webhooks signatures with `standardwebhooks.Webhook(secret).verify`."""
from __future__ import annotations

import json
import time

import httpx
import pytest

from http_fakes import StepNode, WebhookReceiver, wait_for
from chain_service.service import API_KEY, BASETEN_SECRET, WEBHOOK_SECRET, ServiceProcess
from compound.service import baseten_signature
from compound.service.netguard import UnsafeURL, check_webhook_url
from compound.service.store import webhook_id_for

MAX_BODY = 64 * 1024


@pytest.fixture(scope="module")
def node():
    n = StepNode(baseten_secret=BASETEN_SECRET).start()
    yield n
    n.stop()


@pytest.fixture(scope="module")
def service(node, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("chain-api")
    svc = ServiceProcess(f"sqlite:///{tmp / 'store.db'}", tmp / "service.log", node.url,
                         extra_env={"COMPOUND_MAX_BODY_BYTES": str(MAX_BODY)}).start()
    yield svc
    svc.stop()


@pytest.fixture
def client(service):
    with service.client() as c:
        yield c


@pytest.fixture
def receiver():
    r = WebhookReceiver(WEBHOOK_SECRET).start()
    yield r
    r.stop()


def wait_job(client, job_id, statuses=("succeeded", "failed", "canceled"), timeout=20.0) -> dict:
    return wait_for(lambda: (j := client.get(f"/v1/jobs/{job_id}").json())["status"] in statuses and j,
                    timeout, f"job {job_id} to reach {statuses}")


def detail(resp) -> dict:
    return resp.json()["detail"]


# -- basics, auth, validation -------------------------------------------------------------

def test_health_and_openapi(service):
    assert httpx.get(service.url + "/healthz").json() == {"status": "ok"}
    spec = httpx.get(service.url + "/openapi.json").json()
    for path in ("/v1/chains/{name}/run", "/v1/chains/{name}/stream", "/v1/chains/{name}/async",
                 "/v1/jobs/{job_id}", "/v1/jobs/{job_id}/cancel", "/v1/jobs/{job_id}/redeliver",
                 "/v1/jobs/{job_id}/steps/{step}/approve", "/v1/jobs/{job_id}/steps/{step}/reject",
                 "/v1/callbacks/baseten"):
        assert path in spec["paths"], path


def test_api_key_required(service):
    body = {"inputs": {"text": "hi"}}
    r = httpx.post(service.url + "/v1/chains/fake_two_step/run", json=body)
    assert r.status_code == 401 and "API key" in detail(r)["error"]
    r = httpx.post(service.url + "/v1/chains/fake_two_step/run", json=body,
                   headers={"Authorization": "Bearer wrong"})
    assert r.status_code == 401
    r = httpx.get(service.url + "/v1/chains", headers={"X-API-Key": API_KEY})
    assert r.status_code == 200 and "fake_two_step" in [c["name"] for c in r.json()["chains"]]


def test_unknown_chain_lists_valid_names(client):
    r = client.post("/v1/chains/nope/run", json={"inputs": {}})
    assert r.status_code == 404
    d = detail(r)
    assert "unknown chain 'nope'" in d["error"] and "fake_two_step" in d["valid"]


def test_malformed_bodies_name_the_field(client):
    r = client.post("/v1/chains/fake_two_step/run", json={"text": "hi"})  # no "inputs"
    assert r.status_code == 422 and detail(r)["field"] == "inputs"
    r = client.post("/v1/chains/fake_two_step/run", json={"inputs": {"sleep_first": 1}})
    assert r.status_code == 422 and detail(r)["field"] == "inputs" and "text" in detail(r)["error"]
    r = client.post("/v1/chains/fake_two_step/run", content=b"{not json",
                    headers={"content-type": "application/json"})
    assert r.status_code == 422 and "invalid request" in detail(r)["error"]
    r = client.post("/v1/chains/fake_two_step/async", json={"inputs": {"text": "x"}, "webhook_url": "ftp://x/y"})
    assert r.status_code == 400 and detail(r)["field"] == "webhook_url"


def test_oversize_body_is_413(client):
    big = {"inputs": {"text": "x" * (MAX_BODY + 10)}}
    r = client.post("/v1/chains/fake_two_step/run", json=big)
    assert r.status_code == 413 and str(MAX_BODY) in detail(r)["error"]

    def chunks():  # no Content-Length: counted while streaming in
        for _ in range(MAX_BODY // 8192 + 2):
            yield b" " * 8192
    r = client.post("/v1/chains/fake_two_step/run", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413


def test_netguard_refuses_private_webhooks_unless_allowed():
    for url in ("http://127.0.0.1:9/x", "http://localhost/x", "http://169.254.169.254/latest",
                "http://10.1.2.3/x", "http://[::1]/x"):
        with pytest.raises(UnsafeURL, match="non-public"):
            check_webhook_url(url)
        check_webhook_url(url, allow_private=True)
    with pytest.raises(UnsafeURL, match="scheme"):
        check_webhook_url("file:///etc/passwd", allow_private=True)


# -- sync run -----------------------------------------------------------------------------

def test_sync_run_outputs_and_trace(client, node):
    before = node.runs["first"]
    r = client.post("/v1/chains/fake_two_step/run", json={"inputs": {"text": "hello", "fail_first": 1}})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "succeeded"
    assert body["outputs"]["first"] == "HELLO" and body["outputs"]["second"] == "HELLO"
    trace = {t["name"]: t for t in body["trace"]}
    assert trace["first"]["attempts"] == 2  # first call 503, retried
    assert trace["second"]["attempts"] == 1
    assert all(t["status"] == "succeeded" and t["ended_at"] >= t["started_at"] > 0 for t in trace.values())
    assert node.runs["first"] == before + 2


def test_sync_run_node_failure_is_502_with_trace(client):
    r = client.post("/v1/chains/fake_two_step/run", json={"inputs": {"text": "x", "fail_first": 5}})
    assert r.status_code == 502
    body = r.json()
    assert body["status"] == "failed" and body["failed_step"] == "first" and "503" in body["error"]
    assert body["trace"][0]["attempts"] == 3


def test_stream_chain_streams_tail_bytes(service):
    with service.client() as c, c.stream("POST", "/v1/chains/fake_stream/stream",
                                         json={"inputs": {"text": "la"}}) as r:
        assert r.status_code == 200
        assert r.headers["content-type"] == "audio/wav"
        trace = json.loads(r.headers["x-chain-trace"])
        assert [t["name"] for t in trace] == ["first"] and trace[0]["status"] == "succeeded"
        data = b"".join(r.iter_bytes())
    assert data == b"LA:0;LA:1;LA:2;LA:3;"


def test_stream_refused_for_chain_without_streaming_tail(client):
    r = client.post("/v1/chains/fake_two_step/stream", json={"inputs": {"text": "x"}})
    assert r.status_code == 400 and "no streaming tail" in detail(r)["error"]


# -- async jobs + webhooks ---------------------------------------------------------------

def test_async_job_webhook_is_signed_and_verified(client, receiver):
    r = client.post("/v1/chains/fake_two_step/async",
                    json={"inputs": {"text": "async"}, "webhook_url": receiver.url + "/hook"})
    assert r.status_code == 202
    job_id = r.json()["job_id"]
    job = wait_job(client, job_id)
    assert job["status"] == "succeeded" and job["outputs"]["second"] == "ASYNC"
    assert {t["name"] for t in job["trace"]} == {"first", "second"}
    wait_for(lambda: receiver.successes(), 10, "webhook")
    req = receiver.requests[0]
    assert req.verified, req.payload
    assert req.headers["webhook-id"] == webhook_id_for(job_id)
    assert req.payload["type"] == "job.succeeded"
    assert req.payload["data"]["outputs"]["first"] == "ASYNC"
    hooks = wait_for(lambda: (j := client.get(f"/v1/jobs/{job_id}").json())["webhook"][0]["status"] == "delivered"
                     and j["webhook"], 5, "delivery recorded")
    assert hooks[0]["webhook_id"] == webhook_id_for(job_id)


def test_async_node_resolved_by_signed_baseten_callback(client, node):
    """Node "second" is called Baseten-style: async_predict, then the signed webhook arrives at
    /v1/callbacks/baseten and wakes the waiting run."""
    before = node.async_submits["second"]
    r = client.post("/v1/chains/fake_async/run", json={"inputs": {"text": "cb", "sleep_second": 0.2}})
    assert r.status_code == 200, r.text
    assert r.json()["outputs"]["second"] == "CB"
    assert node.async_submits["second"] == before + 1


def test_idempotency_key(client):
    body = {"inputs": {"text": "idem"}}
    key = {"Idempotency-Key": f"k-{time.time()}"}
    a = client.post("/v1/chains/fake_two_step/async", json=body, headers=key)
    b = client.post("/v1/chains/fake_two_step/async", json=body, headers=key)
    assert a.status_code == b.status_code == 202
    assert a.json()["job_id"] == b.json()["job_id"] and b.json()["created"] is False
    c = client.post("/v1/chains/fake_two_step/async", json={"inputs": {"text": "other"}}, headers=key)
    assert c.status_code == 409 and detail(c)["job_id"] == a.json()["job_id"]


def test_webhook_retried_on_5xx_and_429_honouring_retry_after(client):
    rec = WebhookReceiver(WEBHOOK_SECRET, script=[500, ("retry_after", 429, 2), 200]).start()
    try:
        r = client.post("/v1/chains/fake_two_step/async",
                        json={"inputs": {"text": "retry"}, "webhook_url": rec.url + "/hook"})
        job_id = r.json()["job_id"]
        wait_for(lambda: rec.successes(), 20, "webhook success after retries")
        assert [q.status for q in rec.requests] == [500, 429, 200]
        assert all(q.verified for q in rec.requests)
        assert {q.headers["webhook-id"] for q in rec.requests} == {webhook_id_for(job_id)}
        # Retry-After: 2 was honoured (the schedule alone would retry after ~0.6 s).
        assert rec.requests[2].at - rec.requests[1].at >= 1.9
    finally:
        rec.stop()


def test_webhook_slow_receiver_times_out_then_succeeds(client):
    rec = WebhookReceiver(WEBHOOK_SECRET, script=[("sleep", 2.5), 200]).start()  # sender timeout is 1 s
    try:
        r = client.post("/v1/chains/fake_two_step/async",
                        json={"inputs": {"text": "slow"}, "webhook_url": rec.url + "/hook"})
        job_id = r.json()["job_id"]
        hooks = wait_for(lambda: (j := client.get(f"/v1/jobs/{job_id}").json())["webhook"]
                         and j["webhook"][0]["status"] == "delivered" and j["webhook"], 20, "delivered")
        assert hooks[0]["attempts"] >= 2
        wait_for(lambda: len(rec.requests) >= 2, 5, "both requests recorded")
        assert {q.headers["webhook-id"] for q in rec.requests} == {webhook_id_for(job_id)}
    finally:
        rec.stop()


@pytest.mark.fault
def test_webhook_receiver_down_then_back(client):
    rec = WebhookReceiver(WEBHOOK_SECRET)  # port chosen, not listening yet: connection refused
    r = client.post("/v1/chains/fake_two_step/async",
                    json={"inputs": {"text": "down"}, "webhook_url": rec.url + "/hook"})
    job_id = r.json()["job_id"]
    wait_for(lambda: (j := client.get(f"/v1/jobs/{job_id}").json())["webhook"]
             and j["webhook"][0]["attempts"] >= 2, 15, "two failed attempts")
    hook = client.get(f"/v1/jobs/{job_id}").json()["webhook"][0]
    assert hook["status"] == "pending" and hook["last_error"]
    rec.start()
    try:
        wait_for(lambda: rec.successes(), 15, "delivery once the receiver is back")
        assert rec.requests[0].verified and rec.requests[0].headers["webhook-id"] == webhook_id_for(job_id)
    finally:
        rec.stop()


def test_410_disables_endpoint_and_redeliver_reenables(client):
    rec = WebhookReceiver(WEBHOOK_SECRET, script=[410]).start()
    try:
        url = rec.url + "/gone"
        job_id = client.post("/v1/chains/fake_two_step/async",
                             json={"inputs": {"text": "gone"}, "webhook_url": url}).json()["job_id"]
        wait_for(lambda: (j := client.get(f"/v1/jobs/{job_id}").json())["webhook"]
                 and j["webhook"][0]["status"] == "disabled", 15, "endpoint disabled")
        # A second job to the disabled endpoint is not sent at all.
        job2 = client.post("/v1/chains/fake_two_step/async",
                           json={"inputs": {"text": "gone2"}, "webhook_url": url}).json()["job_id"]
        wait_for(lambda: (j := client.get(f"/v1/jobs/{job2}").json())["webhook"]
                 and j["webhook"][0]["status"] == "disabled", 15, "second delivery skipped")
        assert len(rec.requests) == 1
        # Manual redelivery (same webhook-id) re-enables the endpoint.
        r = client.post(f"/v1/jobs/{job_id}/redeliver")
        assert r.status_code == 202 and r.json()["webhook_id"] == webhook_id_for(job_id)
        wait_for(lambda: rec.successes(), 10, "redelivery")
        assert rec.successes()[0].headers["webhook-id"] == webhook_id_for(job_id)
    finally:
        rec.stop()


def test_cancel_running_job(client, receiver, node):
    # "second" stays in flight at the node until the cancel has landed (no sleep to outlast)
    second_held = node.hold("second")
    try:
        job_id = client.post("/v1/chains/fake_two_step/async",
                             json={"inputs": {"text": "c"}, "webhook_url": receiver.url + "/hook"}).json()["job_id"]
        wait_for(lambda: any(t["name"] == "first" for t in client.get(f"/v1/jobs/{job_id}").json()["trace"]),
                 30, "first step done")
        r = client.post(f"/v1/jobs/{job_id}/cancel")
        assert r.status_code == 200
        job = wait_job(client, job_id, timeout=30)
    finally:
        second_held.set()  # later tests' "second" steps run freely
    assert job["status"] == "canceled"
    wait_for(lambda: receiver.successes(), 10, "cancel webhook")
    assert receiver.requests[0].payload["type"] == "job.canceled"
    assert client.post(f"/v1/jobs/{job_id}/cancel").status_code == 409
    assert client.get("/v1/jobs/job_nope").status_code == 404


def test_chain_with_human_step_is_refused_on_sync_routes(client):
    for route in ("run", "stream"):
        r = client.post(f"/v1/chains/fake_approval/{route}", json={"inputs": {"text": "draft me"}})
        assert r.status_code == 409 and "/v1/chains/fake_approval/async" in detail(r)["error"]


def test_human_approval_and_rejection(client):
    job_id = client.post("/v1/chains/fake_approval/async", json={"inputs": {"text": "draft me"}}).json()["job_id"]
    wait_for(lambda: any(p["step"] == "review" for p in client.get(f"/v1/jobs/{job_id}").json().get("pending", [])),
             10, "review pending")
    r = client.post(f"/v1/jobs/{job_id}/steps/nope/approve")
    assert r.status_code == 404 and "review" in detail(r)["error"]
    r = client.post(f"/v1/jobs/{job_id}/steps/review/approve", json={"comment": "ship it"})
    assert r.status_code == 200
    job = wait_job(client, job_id)
    assert job["status"] == "succeeded" and job["outputs"] == {"published": "DRAFT ME", "note": "ship it"}
    assert client.post(f"/v1/jobs/{job_id}/steps/review/approve").status_code == 409

    job2 = client.post("/v1/chains/fake_approval/async", json={"inputs": {"text": "bad"}}).json()["job_id"]
    wait_for(lambda: client.get(f"/v1/jobs/{job2}").json().get("pending"), 10, "review pending")
    assert client.post(f"/v1/jobs/{job2}/steps/review/reject", json={"comment": "no"}).status_code == 200
    job = wait_job(client, job2)
    assert job["status"] == "failed" and job["failed_step"] == "review" and "no" in job["error"]


# -- Baseten callbacks -------------------------------------------------------------------

def _callback(request_id: str, sent_at: float) -> bytes:
    iso = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sent_at)) + ".123456Z"
    return json.dumps({"request_id": request_id, "model_id": "m", "deployment_id": "d",
                       "type": "async_request_completed", "time": iso, "data": {"text": "ok"},
                       "errors": []}).encode()


def test_baseten_callback_signature_freshness_and_dedupe(client):
    rid = f"req-{time.time()}"
    body = _callback(rid, time.time())
    url = "/v1/callbacks/baseten"
    no_auth = {"content-type": "application/json"}  # Baseten sends no API key; the signature is the auth
    r = httpx.post(client.base_url.join(url), content=body, headers=no_auth)
    assert r.status_code == 401 and detail(r)["field"] == "X-BASETEN-SIGNATURE"
    r = httpx.post(client.base_url.join(url), content=body,
                   headers={**no_auth, "X-BASETEN-SIGNATURE": baseten_signature.sign("wrong", body)})
    assert r.status_code == 401
    r = httpx.post(client.base_url.join(url), content=body + b" ",  # body changed after signing
                   headers={**no_auth, "X-BASETEN-SIGNATURE": baseten_signature.sign(BASETEN_SECRET, body)})
    assert r.status_code == 401
    # Rotation: one stale signature and one valid one, comma-separated.
    rotated = baseten_signature.sign("old-secret", body) + "," + baseten_signature.sign(BASETEN_SECRET, body)
    r = httpx.post(client.base_url.join(url), content=body, headers={**no_auth, "X-BASETEN-SIGNATURE": rotated})
    assert r.status_code == 200 and r.json()["request_id"] == rid
    r = httpx.post(client.base_url.join(url), content=body, headers={**no_auth, "X-BASETEN-SIGNATURE": rotated})
    # a re-delivery is acknowledged (2xx stops the sender's retries) but not applied twice
    assert r.status_code == 200 and r.json()["status"] == "duplicate"
    for bad_time in ("NaN", ["2024"], {"t": 1}, 10**400):  # 10**400: float() overflows
        weird = json.dumps({**json.loads(_callback(rid + "-t", time.time())), "time": bad_time}).encode()
        r = httpx.post(client.base_url.join(url), content=weird,
                       headers={**no_auth, "X-BASETEN-SIGNATURE": baseten_signature.sign(BASETEN_SECRET, weird)})
        assert r.status_code == 400 and detail(r)["field"] == "time", bad_time
    stale = _callback(rid + "-old", time.time() - 301)
    r = httpx.post(client.base_url.join(url), content=stale,
                   headers={**no_auth, "X-BASETEN-SIGNATURE": baseten_signature.sign(BASETEN_SECRET, stale)})
    assert r.status_code == 400 and detail(r)["field"] == "time"


def test_signature_helpers_match_runtime_format():
    body = b'{"a":1}'
    header = baseten_signature.sign("s3cret", body)
    assert header.startswith("v1=") and len(header) == 3 + 64
    baseten_signature.verify(body, header, ["other", "s3cret"])
    with pytest.raises(baseten_signature.SignatureError):
        baseten_signature.verify(body, "v1=" + "0" * 64, ["s3cret"])
    with pytest.raises(baseten_signature.SignatureError):
        baseten_signature.verify(body, None, ["s3cret"])


# -- outbox retry policy (pure functions) -------------------------------------------------

def test_retry_schedule_jitter_and_retry_after():
    from email.utils import formatdate

    from compound.service.outbox import next_delay, parse_retry_after
    from compound.service.settings import STANDARD_WEBHOOKS_SCHEDULE as S

    assert S == (0, 5, 300, 1800, 7200, 18000, 36000, 50400, 72000, 86400)
    assert next_delay(S, 1, 0) == 5 and next_delay(S, 2, 0) == 300
    assert next_delay(S, len(S), 0) is None  # schedule exhausted: give up
    delays = {next_delay(S, 3, 0.1) for _ in range(50)}
    assert len(delays) > 1 and all(1620 <= d <= 1980 for d in delays)
    assert next_delay(S, 1, 0, retry_after=120) == 120  # Retry-After longer than the schedule wins
    assert next_delay(S, 2, 0, retry_after=1) == 300  # ...but never shortens it
    assert parse_retry_after("7") == 7
    assert 55 <= parse_retry_after(formatdate(time.time() + 60, usegmt=True)) <= 61
    assert parse_retry_after("soon") is None and parse_retry_after(None) is None
