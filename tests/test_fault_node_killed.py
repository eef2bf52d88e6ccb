"""A model node's process is SIGKILLed mid-request while the chain service is calling it.

The node is the real echo Truss (tests/trusses/echo, Truss's own server) in its own process
group; the chain service is the real `python -m compound.service` with the chains of
tests/faults/chains_plugin.py. Policy: without retries the run fails with an error naming the
node; with a retry policy that spans a restart, the run (sync or durable async job) succeeds.
"""
from __future__ import annotations

import concurrent.futures
import os
import signal
import time
from pathlib import Path

import httpx
import pytest

from compound.runtime.supervisor import Stack, find_free_port_base
from compound.services import Service

pytestmark = pytest.mark.fault

HERE = Path(__file__).parent
ECHO = Service("echo", 0, (HERE / "trusses" / "echo").resolve())
PLUGIN = HERE / "faults" / "chains_plugin.py"
IN_FLIGHT_S = 1.0  # how long after sending the run the node is killed (its request sleeps longer)


def _port_base(after: int = 0) -> int:
    # Spread by pid so parallel test sessions on one box do not race for the same ports.
    return find_free_port_base(start=max(after, 20000 + (os.getpid() % 400) * 10))


@pytest.fixture(scope="module")
def echo_stack():
    stack = Stack(port_base=_port_base(), log_sink=None, ready_timeout_s=120)
    stack.start_services([ECHO])
    yield stack
    stack.stop()


@pytest.fixture(scope="module")
def chain_url(echo_stack, tmp_path_factory):
    state = tmp_path_factory.mktemp("fault-node-killed")
    stack = Stack(port_base=_port_base(after=echo_stack.port_base + 10), log_sink=None, ready_timeout_s=120,
                  env={"COMPOUND_CHAIN_PLUGINS": str(PLUGIN),
                       "COMPOUND_NODE_URL_ECHO": echo_stack.urls()["echo"],
                       "COMPOUND_STATE_DIR": str(state),
                       "COMPOUND_STORE": f"sqlite:///{state / 'store.db'}",
                       "COMPOUND_POLL_S": "0.1"})
    yield stack.start(["chain"])["chain"]
    stack.stop()


def kill_node(stack: Stack) -> None:
    """SIGKILL the echo server's whole process group, as a crashed or OOM-killed replica."""
    running = stack.running.pop("echo")
    os.killpg(running.process.pid, signal.SIGKILL)
    running.process.wait(timeout=10)


def restart_node(stack: Stack) -> None:
    """Start echo again on the same port; blocks until it is ready."""
    stack.running.pop("echo", None)
    # The killed server's port is in TIME_WAIT; the supervisor binds like uvicorn
    # (SO_REUSEADDR), so restarting on the same port works at once.
    stack.start_services([ECHO])


def ensure_node(stack: Stack) -> None:
    if "echo" not in stack.running or stack.running["echo"].process.poll() is not None:
        restart_node(stack)


def _run_sync(chain_url: str, chain: str, inputs: dict) -> httpx.Response:
    with httpx.Client(timeout=120) as client:
        return client.post(f"{chain_url}/v1/chains/{chain}/run", json={"inputs": inputs})


def _wait_job(client: httpx.Client, job_id: str, timeout_s: float = 90) -> dict:
    deadline = time.monotonic() + timeout_s
    while True:
        job = client.get(f"/v1/jobs/{job_id}").json()
        if job["status"] in ("succeeded", "failed", "canceled") or time.monotonic() > deadline:
            return job
        time.sleep(0.2)


def test_node_killed_without_retry_fails_run_naming_the_node(echo_stack, chain_url):
    ensure_node(echo_stack)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pending = pool.submit(_run_sync, chain_url, "fault_echo_no_retry", {"sleep_s": 8, "tag": "a"})
        time.sleep(IN_FLIGHT_S)
        assert not pending.done(), f"run finished before the kill: {pending.result().text[:300]}"
        kill_node(echo_stack)
        response = pending.result(timeout=60)
    assert response.status_code == 502, response.text
    body = response.json()
    assert body["status"] == "failed"
    assert body["failed_step"] == "echo"
    assert "node 'echo'" in body["error"] and "1 attempt" in body["error"], body["error"]
    [step] = [t for t in body["trace"] if t["name"] == "echo"]
    assert step["status"] == "failed" and step["attempts"] == 1


def test_node_killed_and_restarted_within_retry_policy_succeeds(echo_stack, chain_url):
    ensure_node(echo_stack)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pending = pool.submit(_run_sync, chain_url, "fault_echo_retry", {"sleep_s": 3, "tag": "b"})
        time.sleep(IN_FLIGHT_S)
        assert not pending.done()
        kill_node(echo_stack)
        restart_node(echo_stack)
        response = pending.result(timeout=90)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "succeeded"
    assert body["outputs"]["echo"]["echo"] == {"sleep_s": 3, "tag": "b"}
    [step] = [t for t in body["trace"] if t["name"] == "echo"]
    assert step["attempts"] >= 2, step  # the killed attempt plus at least one after the restart


def test_async_job_survives_node_kill_and_restart(echo_stack, chain_url):
    ensure_node(echo_stack)
    with httpx.Client(base_url=chain_url, timeout=30) as client:
        submitted = client.post("/v1/chains/fault_echo_retry/async", json={"inputs": {"sleep_s": 3, "tag": "c"}})
        assert submitted.status_code == 202, submitted.text
        job_id = submitted.json()["job_id"]
        deadline = time.monotonic() + 30
        while client.get(f"/v1/jobs/{job_id}").json()["status"] != "running":
            assert time.monotonic() < deadline, "job never started"
            time.sleep(0.1)
        time.sleep(IN_FLIGHT_S)
        kill_node(echo_stack)
        restart_node(echo_stack)
        job = _wait_job(client, job_id)
    assert job["status"] == "succeeded", job
    assert job["outputs"]["echo"]["echo"] == {"sleep_s": 3, "tag": "c"}
    steps = {t["name"]: t for t in job["trace"]}
    assert steps["echo"]["attempts"] >= 2, steps
