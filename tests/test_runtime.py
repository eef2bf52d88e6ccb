"""The local runtime: a real Truss (tests/trusses/echo) served by Truss's own server."""
from __future__ import annotations

import hashlib
import hmac
import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from compound.runtime.supervisor import Stack, StackError, find_free_port_base, port_is_free
from compound.services import Service, UnknownService, resolve
from http_fakes import WebhookReceiver

ECHO_DIR = Path(__file__).parent / "trusses" / "echo"
SECRET = "runtime-test-secret"


def echo_service() -> Service:
    return Service("echo", 0, ECHO_DIR.resolve())


@pytest.fixture(scope="module")
def echo_url():
    env = {
        "COMPOUND_BASETEN_WEBHOOK_SECRET": SECRET,
        # Baseten makes 2 webhook attempts ~2 s apart; keep the count, shorten the wait.
        "COMPOUND_ASYNC_WEBHOOK_RETRY_DELAY_S": "0.2",
    }
    with Stack(port_base=find_free_port_base(), log_sink=None, env=env) as stack:
        yield stack.start_services([echo_service()])["echo"]


def wait_status(url: str, request_id: str, wanted: set, timeout_s: float = 60.0) -> dict:
    deadline = time.monotonic() + timeout_s
    while True:
        status = httpx.get(f"{url}/async_request/{request_id}").json()
        if status["status"] in wanted or time.monotonic() > deadline:
            return status
        time.sleep(0.05)


def test_truss_starts_ready_serves_and_stops_cleanly():
    base = find_free_port_base()
    stack = Stack(port_base=base, log_sink=None)
    urls = stack.start_services([echo_service()])
    process = stack.running["echo"].process
    assert httpx.get(urls["echo"] + "/v1/models/model").status_code == 200
    body = {"hello": "world"}
    assert httpx.post(urls["echo"] + "/v1/models/model:predict", json=body).json()["echo"] == body
    # Baseten's deployed path shape works locally too
    assert httpx.post(urls["echo"] + "/predict", json=body).json()["echo"] == body
    stack.stop()
    assert process.poll() is not None, "server process still running after stop()"
    assert port_is_free("127.0.0.1", base), "port still bound after stop()"


def test_server_binds_loopback_only_by_default(echo_url):
    port = int(echo_url.rsplit(":", 1)[1])
    listening = subprocess.run(["ss", "-ltnH", f"sport = :{port}"], capture_output=True, text=True)
    if listening.returncode != 0:
        pytest.skip("ss not available")
    local_addresses = [line.split()[3] for line in listening.stdout.splitlines()]
    assert local_addresses == [f"127.0.0.1:{port}"]


def test_model_4xx_passes_through_and_server_keeps_serving(echo_url):
    response = httpx.post(echo_url + "/predict", json={"fail_status": 422})
    assert response.status_code == 422
    assert "failing on purpose" in response.text
    assert httpx.post(echo_url + "/predict", json=[1, 2]).status_code == 400
    assert httpx.post(echo_url + "/predict", json={"ok": 1}).status_code == 200


def test_failed_load_names_the_truss_and_shows_the_error():
    stack = Stack(port_base=find_free_port_base(), log_sink=None, env={"ECHO_FAIL_LOAD": "1"},
                  ready_timeout_s=120)
    with pytest.raises(StackError) as info:
        stack.start_services([echo_service()])
    message = str(info.value)
    assert message.startswith("echo exited")
    assert "load failed on purpose" in message
    assert stack.running == {}


def test_port_in_use_is_a_clear_error():
    base = find_free_port_base()
    with socket.socket() as blocker:
        blocker.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        blocker.bind(("127.0.0.1", base))
        blocker.listen()
        with pytest.raises(StackError, match=rf"port {base} .*already in use.*echo"):
            Stack(port_base=base, log_sink=None).start_services([echo_service()])


def test_unknown_service_lists_valid_ones():
    with pytest.raises(UnknownService, match="valid: chain, llm, whisper, json, tts"):
        resolve(["llm", "gpt5"])
    result = subprocess.run([sys.executable, "-m", "compound.cli", "serve", "gpt5"],
                            capture_output=True, text=True)
    assert result.returncode == 2
    assert "unknown service 'gpt5'" in result.stderr and "whisper" in result.stderr


def _verify_baseten_signature(secret: str, body: bytes, header: str) -> bool:
    expected = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return any(hmac.compare_digest(part.strip().removeprefix("v1="), expected)
               for part in header.split(","))


def test_async_predict_delivers_signed_webhook(echo_url):
    with WebhookReceiver() as receiver:
        response = httpx.post(echo_url + "/async_predict", json={
            "model_input": {"n": 7}, "webhook_endpoint": receiver.url + "/hook"})
        assert response.status_code == 201
        request_id = response.json()["request_id"]
        [hook] = receiver.wait_for(1)
    assert hook.headers["x-baseten-request-id"] == request_id
    body = json.loads(hook.body)
    assert body["type"] == "async_request_completed"
    assert body["request_id"] == request_id and body["model_id"] == "echo"
    assert body["data"]["echo"] == {"n": 7} and body["errors"] == []
    signature = hook.headers["x-baseten-signature"]
    assert _verify_baseten_signature(SECRET, hook.body, signature)
    assert not _verify_baseten_signature("wrong-secret", hook.body, signature)
    assert not _verify_baseten_signature(SECRET, hook.body + b" ", signature)
    status = wait_status(echo_url, request_id, {"SUCCEEDED"})
    assert status["status"] == "SUCCEEDED" and status["webhook_status"] == "SUCCEEDED"


def test_async_status_transitions_and_cancel_while_queued(echo_url):
    # `slow` must still be running through the four requests after it is seen IN_PROGRESS
    # (the 409 below): 6 s leaves a busy machine room, where 1.5 s did not.
    slow = httpx.post(echo_url + "/async_predict",
                      json={"model_input": {"sleep_s": 6, "key": "slow"}}).json()["request_id"]
    queued = httpx.post(echo_url + "/async_predict",
                        json={"model_input": {"key": "never-runs"}}).json()["request_id"]
    assert wait_status(echo_url, slow, {"IN_PROGRESS"})["status"] == "IN_PROGRESS"
    assert httpx.get(f"{echo_url}/async_request/{queued}").json()["status"] == "QUEUED"
    canceled = httpx.delete(f"{echo_url}/async_request/{queued}")
    assert canceled.status_code == 200 and canceled.json()["canceled"] is True
    # a running request cannot be canceled
    assert httpx.delete(f"{echo_url}/async_request/{slow}").status_code == 409
    assert wait_status(echo_url, slow, {"SUCCEEDED"})["status"] == "SUCCEEDED"
    final = httpx.get(f"{echo_url}/async_request/{queued}").json()
    assert final["status"] == "CANCELED" and final["attempts"] == 0


def test_async_request_queued_past_its_max_time_expires_with_a_webhook(echo_url):
    # Baseten's lowest max_time_in_queue_seconds is 10: keep the only worker busy for 12 s so
    # the second request waits longer than its limit, then never runs.
    with WebhookReceiver() as receiver:
        slow = httpx.post(echo_url + "/async_predict",
                          json={"model_input": {"sleep_s": 12, "key": "blocker"}}).json()["request_id"]
        late = httpx.post(echo_url + "/async_predict", json={
            "model_input": {"key": "expires"}, "max_time_in_queue_seconds": 10,
            "webhook_endpoint": receiver.url + "/hook"}).json()["request_id"]
        status = wait_status(echo_url, late, {"EXPIRED", "SUCCEEDED", "FAILED"})
        assert status["status"] == "EXPIRED" and status["attempts"] == 0
        assert "max_time_in_queue_seconds=10" in status["errors"][0]["message"]
        [hook] = receiver.wait_for(1)
    body = json.loads(hook.body)
    assert body["request_id"] == late and body["data"] is None
    assert body["errors"][0]["code"] == "EXPIRED"
    assert _verify_baseten_signature(SECRET, hook.body, hook.headers["x-baseten-signature"])
    assert wait_status(echo_url, slow, {"SUCCEEDED"})["status"] == "SUCCEEDED"


def test_async_retries_5xx_per_retry_config_then_succeeds(echo_url):
    request_id = httpx.post(echo_url + "/async_predict", json={
        "model_input": {"fail_first": 2, "key": "flaky"},
        "inference_retry_config": {"max_attempts": 3, "initial_delay_ms": 10, "max_delay_ms": 50},
    }).json()["request_id"]
    status = wait_status(echo_url, request_id, {"SUCCEEDED", "FAILED"})
    assert status["status"] == "SUCCEEDED" and status["attempts"] == 3


def test_async_4xx_fails_without_retry(echo_url):
    request_id = httpx.post(echo_url + "/async_predict", json={
        "model_input": {"fail_status": 400}}).json()["request_id"]
    status = wait_status(echo_url, request_id, {"FAILED", "SUCCEEDED"})
    assert status["status"] == "FAILED" and status["attempts"] == 1
    assert "HTTP 400" in status["errors"][0]["message"]


def test_unreachable_webhook_ends_webhook_failed_and_server_keeps_serving(echo_url):
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        dead_port = sock.getsockname()[1]
    request_id = httpx.post(echo_url + "/async_predict", json={
        "model_input": {"x": 1}, "webhook_endpoint": f"http://127.0.0.1:{dead_port}/hook",
    }).json()["request_id"]
    status = wait_status(echo_url, request_id, {"WEBHOOK_FAILED"})
    assert status["status"] == "WEBHOOK_FAILED" and status["webhook_status"] == "FAILED"
    assert httpx.post(echo_url + "/predict", json={"still": "up"}).status_code == 200


@pytest.mark.parametrize("body, fragment", [
    ({}, "model_input: Field required"),
    ({"model_input": {"a": 1}, "priority": 7}, "priority"),
    ({"model_input": {"a": 1}, "max_time_in_queue_seconds": 1}, "max_time_in_queue_seconds"),
    ({"model_input": {"a": 1}, "webhook_endpoint": "not a url"}, "webhook_endpoint"),
    ({"model_input": {"a": 1}, "inference_retry_config": {"max_attempts": 0}}, "max_attempts"),
    ({"model_input": {"a": 1}, "surprise": True}, "surprise"),
])
def test_malformed_async_predict_is_422_naming_the_field(echo_url, body, fragment):
    response = httpx.post(echo_url + "/async_predict", json=body)
    assert response.status_code == 422
    assert fragment in response.text


def test_async_predict_rejects_bad_json_and_oversize_bodies(echo_url):
    assert httpx.post(echo_url + "/async_predict", content=b"{nope").status_code == 400
    big = {"model_input": {"blob": "x" * (300 * 1024)}}
    response = httpx.post(echo_url + "/async_predict", json=big)
    assert response.status_code == 413 and "limit" in response.text
    assert httpx.get(f"{echo_url}/async_request/does-not-exist").status_code == 404


def test_finished_async_requests_are_bounded_in_memory():
    """A long-running server forgets the oldest finished requests beyond its cap."""
    import asyncio

    from compound.runtime.async_api import AsyncInferenceQueue, AsyncPredictRequest

    async def scenario():
        queue = AsyncInferenceQueue("http://127.0.0.1:9/unused", "m", max_finished=3)
        queue._ensure_started = lambda: setattr(queue, "_queue", asyncio.PriorityQueue())
        ids = []
        for i in range(6):
            request = queue.submit(AsyncPredictRequest(model_input={"i": i}))
            request.set_status("SUCCEEDED")
            queue._finished(request)
            ids.append(request.request_id)
        return queue, ids

    queue, ids = asyncio.run(scenario())
    assert list(queue.requests) == ids[-3:]
    assert all(r.body.model_input == {} for r in queue.requests.values())
