"""Webhook delivery vs. the network: DNS failures retried, the SSRF address policy, bounded
response reading.

Like test_chain_webhook_pinning.py, a real OutboxWorker runs `_attempt` in-process against a
small recording store; names under `.test` are resolved by a patched socket.getaddrinfo and
every connect outside 127.0.0.0/8 is refused, so nothing leaves the machine."""
from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Optional, Union

import httpcore
import httpx
import pytest
from compound.service import netguard
from compound.service.netguard import UnsafeURL, check_webhook_url
from compound.service.outbox import OutboxWorker, generate_secret
from compound.service.settings import Settings
from compound.service.store.base import DELIVERY_FAILED, Delivery

SECRET = generate_secret()
_real_getaddrinfo = socket.getaddrinfo
_real_connect_tcp = httpcore._backends.auto.AutoBackend.connect_tcp

Answer = Union[list[str], socket.gaierror]


def _fake_network(monkeypatch, answers: dict[str, list[Answer]]) -> None:
    """Each name in `answers` gets its successive answers (the last repeats): a list of IPs, or
    a gaierror to raise. Connects to IPs outside 127.0.0.0/8 are refused."""
    calls: dict[str, int] = {}

    def getaddrinfo(host, port, *args, **kwargs):
        name = host.decode() if isinstance(host, bytes) else host
        if name not in answers:
            return _real_getaddrinfo(host, port, *args, **kwargs)
        n = calls[name] = calls.get(name, 0) + 1
        answer = answers[name][min(n, len(answers[name])) - 1]
        if isinstance(answer, BaseException):
            raise answer
        return [(socket.AF_INET6 if ":" in ip else socket.AF_INET, socket.SOCK_STREAM,
                 socket.IPPROTO_TCP, "", (ip, int(port))) for ip in answer]

    async def connect_tcp(self, host, port, *args, **kwargs):
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            ip = None
        if ip is not None and ip not in ipaddress.ip_network("127.0.0.0/8"):
            raise httpcore.ConnectError("[Errno 111] connection refused (test: no network)")
        return await _real_connect_tcp(self, host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    monkeypatch.setattr(httpcore._backends.auto.AutoBackend, "connect_tcp", connect_tcp)


class _Store:
    def __init__(self):
        self.calls: list[tuple] = []

    async def endpoint_disabled(self, url):
        return False

    async def delivery_succeeded(self, delivery_id, status_code, *, worker=None):
        self.calls.append(("succeeded", status_code))

    async def delivery_retry(self, delivery_id, next_attempt_at, error, status_code=None, *, worker=None):
        self.calls.append(("retry", error, status_code, next_attempt_at - time.time()))

    async def delivery_give_up(self, delivery_id, status, error, status_code=None, *, worker=None):
        self.calls.append(("give_up", status, error, status_code))

    async def disable_endpoint(self, url, reason):
        self.calls.append(("disable", url))


def _attempt(url: str, *, attempts: int = 0, allow_private: bool = False, timeout_s: float = 5.0,
             schedule: tuple[float, ...] = (0.0, 5.0, 300.0)) -> list[tuple]:
    """Attempt number `attempts + 1` of one delivery by a real OutboxWorker → its store calls."""
    store = _Store()
    settings = Settings(allow_private_webhooks=allow_private, webhook_schedule=schedule,
                        webhook_jitter=0.0, webhook_timeout_s=timeout_s)

    async def main():
        async with httpx.AsyncClient(follow_redirects=False) as http:  # what run() would create
            worker = OutboxWorker(store, settings, SECRET, http=http)
            now = time.time()
            await worker._attempt(Delivery(id="msg_guard_test", job_id="job-1", url=url,
                                           payload={"job_id": "job-1", "status": "succeeded"},
                                           status="pending", attempts=attempts,
                                           next_attempt_at=now, created_at=now))

    asyncio.run(main())
    return store.calls


class _OkHandler(BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802
        self.rfile.read(int(self.headers.get("content-length", 0)))
        self.server.requests.append(self.headers.get("webhook-id"))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def ok_receiver():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _OkHandler)
    server.daemon_threads = True
    server.requests = []
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


# -- DNS failures are retried, policy refusals are final -------------------------------------
def test_unresolvable_host_is_retried_until_it_resolves(monkeypatch, ok_receiver):
    monkeypatch.setattr(netguard, "_is_private", lambda ip: False)  # 127.0.0.1 stands for public
    _fake_network(monkeypatch, {"flaky.test": [
        socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution"),
        socket.gaierror(socket.EAI_NONAME, "Name or service not known"),
        ["127.0.0.1"]]})
    url = f"http://flaky.test:{ok_receiver.server_address[1]}/hook"
    [call] = _attempt(url, attempts=0)
    assert call[0] == "retry" and call[2] is None and "does not resolve" in call[1], call
    assert "Temporary failure" in call[1] and 4.9 < call[3] <= 5.0  # the schedule's next step
    [call] = _attempt(url, attempts=1)
    assert call[0] == "retry" and "does not resolve" in call[1] and 299 < call[3] <= 300, call
    assert ok_receiver.requests == []
    assert _attempt(url, attempts=2) == [("succeeded", 204)]
    assert ok_receiver.requests == ["msg_guard_test"]


def test_unresolvable_host_gives_up_only_when_the_schedule_is_spent(monkeypatch):
    _fake_network(monkeypatch, {"gone.test": [socket.gaierror(socket.EAI_NONAME, "Name or service not known")]})
    [call] = _attempt("http://gone.test/hook", attempts=2, schedule=(0.0, 5.0, 300.0))
    assert call[:2] == ("give_up", DELIVERY_FAILED)
    assert "gave up after 3 attempts" in call[2] and "does not resolve" in call[2]


def test_policy_refusals_still_give_up_at_once(monkeypatch):
    _fake_network(monkeypatch, {"internal.test": [["10.0.0.7"]]})
    [call] = _attempt("http://internal.test/hook")
    assert call[:2] == ("give_up", DELIVERY_FAILED) and "non-public address 10.0.0.7" in call[2]
    [call] = _attempt("ftp://example.test/hook")
    assert call[:2] == ("give_up", DELIVERY_FAILED) and "scheme" in call[2]
    [call] = _attempt("http://user:pw@example.test/hook")
    assert call[:2] == ("give_up", DELIVERY_FAILED) and "credentials" in call[2]


def test_unresolvable_host_at_submission_is_still_an_unsafe_url(monkeypatch):
    # app.py answers 400 for any UnsafeURL at submission: a typo is reported at once.
    _fake_network(monkeypatch, {"typo.test": [socket.gaierror(socket.EAI_NONAME, "Name or service not known")]})
    with pytest.raises(UnsafeURL, match="does not resolve"):
        check_webhook_url("https://typo.test/hook")


# -- the address policy --------------------------------------------------------------------
# Not `is_global`, or an IPv6 address that carries a non-public IPv4 one: carrier-grade NAT
# (Alibaba's metadata 100.100.100.200), 6to4 of 169.254.169.254, IPv4-mapped 10.0.0.1, NAT64 of
# the metadata address, Teredo, IPv4-compatible, 0.0.0.0, IETF protocol assignments, benchmarking.
NON_PUBLIC = ["100.100.100.200", "100.64.0.1", "2002:a9fe:a9fe::", "2002:a00:1::", "::ffff:10.0.0.1",
              "::ffff:127.0.0.1", "64:ff9b::a9fe:a9fe", "2001:0:4136:e378:8000:63bf:3fff:fdd2",
              "2001::1", "::a9fe:a9fe", "0.0.0.0", "192.0.0.1", "198.18.0.1", "2001:db8::1",
              "fc00::1", "ff02::1"]
PUBLIC = ["93.184.216.34", "2606:4700::1111", "2002:5db8:d822::", "::ffff:93.184.216.34"]


@pytest.mark.parametrize("address", NON_PUBLIC)
def test_non_global_addresses_refused(monkeypatch, address):
    _fake_network(monkeypatch, {"hook.test": [["93.184.216.34", address]]})
    with pytest.raises(UnsafeURL, match=re.escape(f"non-public address {ipaddress.ip_address(address)};")):
        check_webhook_url("https://hook.test/x")
    [call] = _attempt("https://hook.test/x")  # and at delivery: a final give-up
    assert call[:2] == ("give_up", DELIVERY_FAILED) and "non-public address" in call[2]


@pytest.mark.parametrize("address", PUBLIC)
def test_public_addresses_pass(monkeypatch, address):
    _fake_network(monkeypatch, {"hook.test": [[address]]})
    assert check_webhook_url("https://hook.test/x") == [address]


# -- the receiver's answer is read only as far as needed ------------------------------------
class _HugeBodyReceiver:
    """Answers every POST `200` with a chunked body of `total` bytes that never ends (the
    connection then stays open), counting what the client accepted. A client that reads the
    whole body holds `total` bytes and then waits for more until its timeout."""

    def __init__(self, total: int = 64 * 1024 * 1024, chunk: int = 64 * 1024):
        self.total, self.chunk = total, chunk
        self.sent = 0
        self.closed_by_client = threading.Event()
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        conn, _ = self.sock.accept()
        with conn:
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * 1024)
            data = b""
            while b"\r\n\r\n" not in data:
                data += conn.recv(65536)
            head, _, rest = data.partition(b"\r\n\r\n")
            length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                          if line.lower().startswith(b"content-length:"))
            while len(rest) < length:
                rest += conn.recv(65536)
            piece = b"%x\r\n%s\r\n" % (self.chunk, b"x" * self.chunk)
            try:
                conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n"
                             b"transfer-encoding: chunked\r\n\r\n")
                while self.sent < self.total:
                    conn.sendall(piece)
                    self.sent += self.chunk
                conn.settimeout(30)
                if conn.recv(1) == b"":  # all sent, no last chunk: wait for the client to go
                    self.closed_by_client.set()
            except OSError:  # reset or broken pipe: the client closed mid-body
                self.closed_by_client.set()

    def stop(self):
        self.sock.close()


@pytest.mark.parametrize("pinned", [True, False], ids=["pinned", "shared-client"])
def test_a_huge_response_body_is_not_read(monkeypatch, pinned):
    receiver = _HugeBodyReceiver()
    try:
        if pinned:  # private webhooks refused: netguard.post_pinned sends it
            monkeypatch.setattr(netguard, "_is_private", lambda ip: False)
            _fake_network(monkeypatch, {"huge.test": [["127.0.0.1"]]})
            url = f"http://huge.test:{receiver.port}/hook"
        else:  # private webhooks allowed: the worker's shared client sends it
            url = f"http://127.0.0.1:{receiver.port}/hook"
        started = time.monotonic()
        calls = _attempt(url, allow_private=not pinned, timeout_s=5.0)
        assert calls == [("succeeded", 200)]  # not "timed out" waiting for the body's end
        assert time.monotonic() - started < 4
        assert receiver.closed_by_client.wait(10)  # the client hung up mid-body ...
        # ... having taken a few socket buffers' worth at most, not the 64 MiB on offer
        assert receiver.sent < 16 * 1024 * 1024, receiver.sent
    finally:
        receiver.stop()
