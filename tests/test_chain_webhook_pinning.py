"""Webhook delivery is pinned to the addresses netguard vetted (no DNS rebinding).

The outbox worker runs in-process against a small fake store, with private webhooks NOT
allowed, so the pinned path (netguard.check_webhook_url -> netguard.post_pinned) is what runs.
Name resolution is faked by patching socket.getaddrinfo (what netguard and asyncio's resolver
call) and every connect goes through a patched httpcore backend that refuses anything but
127.0.0.0/8, so nothing leaves the machine. The receivers are real local servers (the
Standard Webhooks verifying one from http_fakes)."""
from __future__ import annotations

import functools
import threading
import time
from http.server import ThreadingHTTPServer

import httpx
import pytest
from http_fakes import WebhookReceiver
from compound.service import netguard
from compound.service.netguard import UnsafeURL, check_webhook_url
from compound.service.outbox import generate_secret
from compound.service.store.base import DELIVERY_FAILED
from net_fakes import attempt_delivery, fake_network_async, self_signed_tls

SECRET = generate_secret()
# One delivery attempt by a real OutboxWorker (private webhooks not allowed; by default a
# one-step schedule: a failure gives up at once). Returns the store calls it made.
_deliver_once = functools.partial(attempt_delivery, secret=SECRET, delivery_id="msg_pinning_test")


@pytest.fixture
def receiver():
    r = WebhookReceiver(SECRET).start()
    yield r
    r.stop()


def test_check_webhook_url_returns_the_vetted_addresses(monkeypatch):
    fake_network_async(monkeypatch, {"hook.test": [["93.184.216.34", "2606:2800:220:1::1", "93.184.216.34"]]})
    assert check_webhook_url("https://hook.test/x") == ["93.184.216.34", "2606:2800:220:1::1"]
    assert check_webhook_url("https://hook.test/x", allow_private=True) is None  # not resolved
    with pytest.raises(UnsafeURL, match="invalid port"):
        check_webhook_url("http://hook.test:99999/x")


def test_rebinding_name_never_reaches_the_internal_receiver(monkeypatch, receiver):
    # First answer public (passes the check), every later one 127.0.0.1 where the "internal"
    # receiver listens. Resolving again at connect time would POST to it and succeed.
    dialled = fake_network_async(monkeypatch, {"rebind.test": [["93.184.216.34"], ["127.0.0.1"]]})
    calls = _deliver_once(f"http://rebind.test:{receiver.port}/hook")
    assert receiver.requests == []  # the internal receiver got nothing
    assert dialled == ["93.184.216.34"]  # only the vetted address was dialled
    assert len(calls) == 1 and calls[0][:2] == ("give_up", DELIVERY_FAILED), calls
    error = calls[0][2]
    assert "gave up after 1 attempts" in error and "ConnectError" in error
    assert "93.184.216.34" in error and "vetted addresses of 'rebind.test'" in error


def test_pinned_delivery_sends_host_header_and_tries_next_address(monkeypatch, receiver):
    # Every address counts as public for this test, so the pinned path (not the dev-mode plain
    # POST) runs against the local receiver; the first two vetted addresses refuse.
    monkeypatch.setattr(netguard, "is_public", lambda ip: True)
    dialled = fake_network_async(monkeypatch, {"hook.test": [["10.255.0.1", "::1", "127.0.0.1"],
                                                             ["203.0.113.9"]]})
    calls = _deliver_once(f"http://hook.test:{receiver.port}/hook")
    assert calls == [("succeeded", 200)]
    assert dialled == ["10.255.0.1", "::1", "127.0.0.1"]  # resolver order; IPv6 fine in a URL
    [req] = receiver.requests
    assert req.verified and req.headers["webhook-id"] == "msg_pinning_test"
    assert req.headers["host"] == f"hook.test:{receiver.port}"
    assert req.payload == {"job_id": "job-1", "status": "succeeded"}


def test_pinned_https_delivery_uses_the_name_for_sni_and_certificate(monkeypatch, tmp_path):
    tls = self_signed_tls("hook.test", tmp_path)
    rec = WebhookReceiver(SECRET)  # its handler, served over TLS
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), rec._handler_cls)
    httpd.daemon_threads = True
    httpd.socket = tls.server.wrap_socket(httpd.socket, server_side=True)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        port = httpd.server_address[1]
        # the client trusts only this certificate (hostname checking stays on)
        monkeypatch.setattr(httpx, "AsyncHTTPTransport",
                            functools.partial(httpx.AsyncHTTPTransport, verify=tls.trust))
        monkeypatch.setattr(netguard, "is_public", lambda ip: True)
        fake_network_async(monkeypatch, {"hook.test": [["127.0.0.1"]], "other.test": [["127.0.0.1"]]})
        assert _deliver_once(f"https://hook.test:{port}/hook") == [("succeeded", 200)]
        assert tls.sni == ["hook.test"]  # SNI is the name, though the socket dialled 127.0.0.1
        assert [r.headers["host"] for r in rec.requests] == [f"hook.test:{port}"]
        assert rec.requests[0].verified
        # the certificate is checked against the URL's name: another name at the same IP fails
        [call] = _deliver_once(f"https://other.test:{port}/hook")
        assert call[:2] == ("give_up", DELIVERY_FAILED) and "CERTIFICATE_VERIFY_FAILED" in call[2]
        assert len(rec.requests) == 1
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_pinned_delivery_keeps_the_timeout_and_retry_after_handling(monkeypatch):
    monkeypatch.setattr(netguard, "is_public", lambda ip: True)
    fake_network_async(monkeypatch, {"hook.test": [["127.0.0.1"]]})
    rec = WebhookReceiver(SECRET, script=[("retry_after", 429, 7), ("sleep", 2.0)]).start()
    try:
        [call] = _deliver_once(f"http://hook.test:{rec.port}/hook", schedule=(0.0, 0.0))
        assert call[:3] == ("retry", "HTTP 429", 429) and 6 < call[3] <= 7  # Retry-After: 7
        started = time.monotonic()
        [call] = _deliver_once(f"http://hook.test:{rec.port}/hook", timeout_s=0.4)
        assert time.monotonic() - started < 1.5  # bounded by the timeout, not the slow receiver
        assert call[:2] == ("give_up", DELIVERY_FAILED) and "timed out after 0.4 s" in call[2]
    finally:
        rec.stop()
