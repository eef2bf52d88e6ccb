"""Webhook delivery is pinned to the addresses netguard vetted (no DNS rebinding).

The outbox worker runs in-process against a small fake store, with private webhooks NOT
allowed, so the pinned path (netguard.check_webhook_url -> netguard.post_pinned) is what runs.
Name resolution is faked by patching socket.getaddrinfo (what netguard and asyncio's resolver
call) and every connect goes through a patched httpcore backend that refuses anything but
127.0.0.0/8, so nothing leaves the machine. The receivers are real local servers (the
Standard Webhooks verifying one from http_fakes)."""
from __future__ import annotations

import asyncio
import datetime
import functools
import ipaddress
import socket
import ssl
import threading
import time
from http.server import ThreadingHTTPServer
from typing import Optional

import httpcore
import httpx
import pytest
from http_fakes import WebhookReceiver
from compound.service import netguard
from compound.service.netguard import UnsafeURL, check_webhook_url
from compound.service.outbox import OutboxWorker, generate_secret
from compound.service.settings import Settings
from compound.service.store.base import DELIVERY_FAILED, Delivery

SECRET = generate_secret()
_real_getaddrinfo = socket.getaddrinfo
_real_connect_tcp = httpcore._backends.auto.AutoBackend.connect_tcp


def _fake_network(monkeypatch, answers: dict[str, list[list[str]]]) -> list[str]:
    """Names in `answers` resolve to their successive answers (the last repeats); a connect to
    an IP outside 127.0.0.0/8 is refused (no traffic leaves the machine). Returns the hosts the
    HTTP client dialled (httpcore's connect_tcp), in order."""
    calls: dict[str, int] = {}
    dialled: list[str] = []

    def getaddrinfo(host, port, *args, **kwargs):
        name = host.decode() if isinstance(host, bytes) else host  # anyio passes IDNA bytes
        if name not in answers:
            return _real_getaddrinfo(host, port, *args, **kwargs)
        n = calls[name] = calls.get(name, 0) + 1
        ips = answers[name][min(n, len(answers[name])) - 1]
        return [(socket.AF_INET6 if ":" in ip else socket.AF_INET, socket.SOCK_STREAM,
                 socket.IPPROTO_TCP, "", (ip, int(port))) for ip in ips]

    async def connect_tcp(self, host, port, *args, **kwargs):
        dialled.append(host)
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            ip = None  # a name: the real call resolves it (through the fake getaddrinfo)
        if ip is not None and ip not in ipaddress.ip_network("127.0.0.0/8"):
            raise httpcore.ConnectError("[Errno 111] connection refused (test: no network)")
        return await _real_connect_tcp(self, host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    monkeypatch.setattr(httpcore._backends.auto.AutoBackend, "connect_tcp", connect_tcp)
    return dialled


class _Store:
    """The outbox's store calls for one attempt, recorded."""

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


def _deliver_once(url: str, timeout_s: float = 5.0, schedule: tuple[float, ...] = (0.0,)) -> list[tuple]:
    """One delivery attempt by a real OutboxWorker (private webhooks not allowed; by default a
    one-step schedule: a failure gives up at once). Returns the store calls it made."""
    store = _Store()
    settings = Settings(allow_private_webhooks=False, webhook_schedule=schedule, webhook_jitter=0.0,
                        webhook_timeout_s=timeout_s)

    async def main():
        async with httpx.AsyncClient(follow_redirects=False) as http:  # what run() would create
            worker = OutboxWorker(store, settings, SECRET, http=http)
            now = time.time()
            await worker._attempt(Delivery(id="msg_pinning_test", job_id="job-1", url=url,
                                           payload={"job_id": "job-1", "status": "succeeded"},
                                           status="pending", attempts=0, next_attempt_at=now,
                                           created_at=now))

    asyncio.run(main())
    return store.calls


@pytest.fixture
def receiver():
    r = WebhookReceiver(SECRET).start()
    yield r
    r.stop()


def test_check_webhook_url_returns_the_vetted_addresses(monkeypatch):
    _fake_network(monkeypatch, {"hook.test": [["93.184.216.34", "2606:2800:220:1::1", "93.184.216.34"]]})
    assert check_webhook_url("https://hook.test/x") == ["93.184.216.34", "2606:2800:220:1::1"]
    assert check_webhook_url("https://hook.test/x", allow_private=True) is None  # not resolved
    with pytest.raises(UnsafeURL, match="invalid port"):
        check_webhook_url("http://hook.test:99999/x")


def test_rebinding_name_never_reaches_the_internal_receiver(monkeypatch, receiver):
    # First answer public (passes the check), every later one 127.0.0.1 where the "internal"
    # receiver listens. Resolving again at connect time would POST to it and succeed.
    dialled = _fake_network(monkeypatch, {"rebind.test": [["93.184.216.34"], ["127.0.0.1"]]})
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
    monkeypatch.setattr(netguard, "_is_private", lambda ip: False)
    dialled = _fake_network(monkeypatch, {"hook.test": [["10.255.0.1", "::1", "127.0.0.1"],
                                                        ["203.0.113.9"]]})
    calls = _deliver_once(f"http://hook.test:{receiver.port}/hook")
    assert calls == [("succeeded", 200)]
    assert dialled == ["10.255.0.1", "::1", "127.0.0.1"]  # resolver order; IPv6 fine in a URL
    [req] = receiver.requests
    assert req.verified and req.headers["webhook-id"] == "msg_pinning_test"
    assert req.headers["host"] == f"hook.test:{receiver.port}"
    assert req.payload == {"job_id": "job-1", "status": "succeeded"}


def _self_signed(name: str) -> tuple[bytes, bytes]:
    """(cert PEM, key PEM) for a self-signed certificate valid for DNS name `name` only."""
    x509 = pytest.importorskip("cryptography.x509")
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    return (cert.public_bytes(serialization.Encoding.PEM),
            key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption()))


def test_pinned_https_delivery_uses_the_name_for_sni_and_certificate(monkeypatch, tmp_path):
    cert, key = _self_signed("hook.test")
    (tmp_path / "cert.pem").write_bytes(cert)
    (tmp_path / "key.pem").write_bytes(key)
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    sni: list[Optional[str]] = []
    server_ctx.sni_callback = lambda sock, name, ctx: sni.append(name)
    rec = WebhookReceiver(SECRET)  # its handler, served over TLS
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), rec._handler_cls)
    httpd.daemon_threads = True
    httpd.socket = server_ctx.wrap_socket(httpd.socket, server_side=True)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        port = httpd.server_address[1]
        # the client trusts only this certificate (hostname checking stays on)
        trust = ssl.create_default_context(cadata=cert.decode())
        monkeypatch.setattr(httpx, "AsyncHTTPTransport",
                            functools.partial(httpx.AsyncHTTPTransport, verify=trust))
        monkeypatch.setattr(netguard, "_is_private", lambda ip: False)
        _fake_network(monkeypatch, {"hook.test": [["127.0.0.1"]], "other.test": [["127.0.0.1"]]})
        assert _deliver_once(f"https://hook.test:{port}/hook") == [("succeeded", 200)]
        assert sni == ["hook.test"]  # SNI is the name, though the socket dialled 127.0.0.1
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
    monkeypatch.setattr(netguard, "_is_private", lambda ip: False)
    _fake_network(monkeypatch, {"hook.test": [["127.0.0.1"]]})
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
