"""Webhook delivery vs. the network: DNS failures retried, the SSRF address policy, bounded
response reading.

Like test_chain_webhook_pinning.py, a real OutboxWorker runs `_attempt` in-process against a
small recording store; names under `.test` are resolved by a patched socket.getaddrinfo and
every connect outside 127.0.0.0/8 is refused, so nothing leaves the machine."""
from __future__ import annotations

import functools
import ipaddress
import re
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from compound.service import netguard
from compound.service.netguard import UnsafeURL, check_webhook_url
from compound.service.outbox import generate_secret
from compound.service.store.base import DELIVERY_FAILED
from net_fakes import NON_PUBLIC, PUBLIC, attempt_delivery, fake_network_async

SECRET = generate_secret()
# Attempt number `attempts + 1` of one delivery by a real OutboxWorker → its store calls.
_attempt = functools.partial(attempt_delivery, secret=SECRET, delivery_id="msg_guard_test",
                             schedule=(0.0, 5.0, 300.0))


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
    monkeypatch.setattr(netguard, "is_public", lambda ip: True)  # 127.0.0.1 stands for public
    fake_network_async(monkeypatch, {"flaky.test": [
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
    fake_network_async(monkeypatch, {"gone.test": [
        socket.gaierror(socket.EAI_NONAME, "Name or service not known")]})
    [call] = _attempt("http://gone.test/hook", attempts=2, schedule=(0.0, 5.0, 300.0))
    assert call[:2] == ("give_up", DELIVERY_FAILED)
    assert "gave up after 3 attempts" in call[2] and "does not resolve" in call[2]


def test_policy_refusals_still_give_up_at_once(monkeypatch):
    fake_network_async(monkeypatch, {"internal.test": [["10.0.0.7"]]})
    [call] = _attempt("http://internal.test/hook")
    assert call[:2] == ("give_up", DELIVERY_FAILED) and "non-public address 10.0.0.7" in call[2]
    [call] = _attempt("ftp://example.test/hook")
    assert call[:2] == ("give_up", DELIVERY_FAILED) and "scheme" in call[2]
    [call] = _attempt("http://user:pw@example.test/hook")
    assert call[:2] == ("give_up", DELIVERY_FAILED) and "credentials" in call[2]


def test_unresolvable_host_at_submission_is_still_an_unsafe_url(monkeypatch):
    # app.py answers 400 for any UnsafeURL at submission: a typo is reported at once.
    fake_network_async(monkeypatch, {"typo.test": [
        socket.gaierror(socket.EAI_NONAME, "Name or service not known")]})
    with pytest.raises(UnsafeURL, match="does not resolve"):
        check_webhook_url("https://typo.test/hook")


# -- the address policy --------------------------------------------------------------------
# NON_PUBLIC / PUBLIC (net_fakes): the same lists whisper's URL check is tested against.
@pytest.mark.parametrize("address", NON_PUBLIC)
def test_non_global_addresses_refused(monkeypatch, address):
    fake_network_async(monkeypatch, {"hook.test": [["93.184.216.34", address]]})
    with pytest.raises(UnsafeURL, match=re.escape(f"non-public address {ipaddress.ip_address(address)};")):
        check_webhook_url("https://hook.test/x")
    [call] = _attempt("https://hook.test/x")  # and at delivery: a final give-up
    assert call[:2] == ("give_up", DELIVERY_FAILED) and "non-public address" in call[2]


@pytest.mark.parametrize("address", PUBLIC)
def test_public_addresses_pass(monkeypatch, address):
    fake_network_async(monkeypatch, {"hook.test": [[address]]})
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
            monkeypatch.setattr(netguard, "is_public", lambda ip: True)
            fake_network_async(monkeypatch, {"huge.test": [["127.0.0.1"]]})
            url = f"http://huge.test:{receiver.port}/hook"
        else:  # private webhooks allowed: the worker's shared client sends it
            url = f"http://127.0.0.1:{receiver.port}/hook"
        calls = _attempt(url, allow_private=not pinned, timeout_s=5.0)
        # "succeeded", not "timed out after 5 s": the endless body's end was never waited for
        assert calls == [("succeeded", 200)]
        assert receiver.closed_by_client.wait(10)  # the client hung up mid-body ...
        # ... having taken a few socket buffers' worth at most, not the 64 MiB on offer
        assert receiver.sent < 16 * 1024 * 1024, receiver.sent
    finally:
        receiver.stop()
