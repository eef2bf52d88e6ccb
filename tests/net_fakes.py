"""A fake network for the webhook-delivery and audio-fetch tests: no traffic leaves the machine.

- `fake_dns`: names under test (`*.test`) resolve through a patched socket.getaddrinfo (what
  netguard, whisper's fetch and asyncio's resolver call) to scripted answers.
- `refuse_non_loopback_async` / `_sync`: every connect to an IP outside 127.0.0.0/8 is refused,
  for the async HTTP client (httpcore's AutoBackend.connect_tcp: the outbox worker) or the
  sync one (socket.create_connection: whisper's fetch). Both return the hosts dialled.
- `self_signed_tls`: a TLS server context for one DNS name, and a client context trusting
  only that certificate (hostname checking stays on).
- `RecordingOutboxStore` and `attempt_delivery`: one attempt of one delivery by a real
  OutboxWorker, in-process, against a store that records the calls it gets.
"""
from __future__ import annotations

import asyncio
import datetime
import ipaddress
import socket
import ssl
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpcore
import httpx
import pytest

_real_getaddrinfo = socket.getaddrinfo
_real_create_connection = socket.create_connection
_real_connect_tcp = httpcore._backends.auto.AutoBackend.connect_tcp
_LOOPBACK = ipaddress.ip_network("127.0.0.0/8")

Answer = list[str] | socket.gaierror

# Not `is_global`, or an IPv6 address that carries a non-public IPv4 one: carrier-grade NAT
# (Alibaba's metadata 100.100.100.200), 6to4 of 169.254.169.254, IPv4-mapped 10.0.0.1, NAT64 of
# the metadata address, Teredo, IPv4-compatible, 0.0.0.0, IETF protocol assignments, benchmarking.
NON_PUBLIC = ["100.100.100.200", "100.64.0.1", "2002:a9fe:a9fe::", "2002:a00:1::", "::ffff:10.0.0.1",
              "::ffff:127.0.0.1", "64:ff9b::a9fe:a9fe", "2001:0:4136:e378:8000:63bf:3fff:fdd2",
              "2001::1", "::a9fe:a9fe", "0.0.0.0", "192.0.0.1", "198.18.0.1", "2001:db8::1",
              "fc00::1", "ff02::1"]
PUBLIC = ["93.184.216.34", "2606:4700::1111", "2002:5db8:d822::", "::ffff:93.184.216.34"]


# -- the fake network ------------------------------------------------------------------------
def fake_dns(monkeypatch, answers: dict[str, list[Answer]]) -> None:
    """Each name in `answers` gets its successive answers (the last repeats): a list of IPs, or
    a gaierror to raise. Other names go to the real resolver."""
    calls: dict[str, int] = {}

    def getaddrinfo(host, port, *args, **kwargs):
        name = host.decode() if isinstance(host, bytes) else host  # anyio passes IDNA bytes
        if name not in answers:
            return _real_getaddrinfo(host, port, *args, **kwargs)
        n = calls[name] = calls.get(name, 0) + 1
        answer = answers[name][min(n, len(answers[name])) - 1]
        if isinstance(answer, BaseException):
            raise answer
        return [(socket.AF_INET6 if ":" in ip else socket.AF_INET, socket.SOCK_STREAM,
                 socket.IPPROTO_TCP, "", (ip, int(port))) for ip in answer]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


def _refused(host: str) -> bool:
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False  # a name: the real call resolves it (through the fake getaddrinfo)
    return ip not in _LOOPBACK


def refuse_non_loopback_async(monkeypatch) -> list[str]:
    """The async HTTP client (httpcore) connects only inside 127.0.0.0/8; anything else is
    refused (no traffic leaves the machine). Returns the hosts it dialled, in order."""
    dialled: list[str] = []

    async def connect_tcp(self, host, port, *args, **kwargs):
        dialled.append(host)
        if _refused(host):
            raise httpcore.ConnectError("[Errno 111] connection refused (test: no network)")
        return await _real_connect_tcp(self, host, port, *args, **kwargs)

    monkeypatch.setattr(httpcore._backends.auto.AutoBackend, "connect_tcp", connect_tcp)
    return dialled


def refuse_non_loopback_sync(monkeypatch) -> list[str]:
    """socket.create_connection (what the sync httpcore backend dials with) connects only inside
    127.0.0.0/8; anything else is refused (no traffic leaves the machine). Returns the hosts it
    was asked for, in order."""
    dialled: list[str] = []

    def create_connection(address, *args, **kwargs):
        dialled.append(address[0])
        if _refused(address[0]):
            raise ConnectionRefusedError(111, "connection refused (test: no network)")
        return _real_create_connection(address, *args, **kwargs)

    monkeypatch.setattr(socket, "create_connection", create_connection)
    return dialled


def fake_network_async(monkeypatch, answers: dict[str, list[Answer]]) -> list[str]:
    """`fake_dns` + `refuse_non_loopback_async`: returns the hosts the async client dialled."""
    fake_dns(monkeypatch, answers)
    return refuse_non_loopback_async(monkeypatch)


def fake_network_sync(monkeypatch, answers: dict[str, list[Answer]]) -> list[str]:
    """`fake_dns` + `refuse_non_loopback_sync`: returns the hosts the sync client dialled."""
    fake_dns(monkeypatch, answers)
    return refuse_non_loopback_sync(monkeypatch)


# -- TLS for one name --------------------------------------------------------------------------
def self_signed(name: str) -> tuple[bytes, bytes]:
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


@dataclass
class SelfSignedTLS:
    server: ssl.SSLContext  # serves the certificate; records each SNI name into `sni`
    trust: ssl.SSLContext  # a client context that trusts only this certificate
    sni: list[str | None] = field(default_factory=list)


def self_signed_tls(name: str, tmp_path: Path) -> SelfSignedTLS:
    """A server context with a self-signed certificate for `name` only, the SNI names clients
    sent to it, and a client context trusting only that certificate (hostname checking on)."""
    cert, key = self_signed(name)
    (tmp_path / "cert.pem").write_bytes(cert)
    (tmp_path / "key.pem").write_bytes(key)
    tls = SelfSignedTLS(server=ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER),
                        trust=ssl.create_default_context(cadata=cert.decode()))
    tls.server.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    tls.server.sni_callback = lambda sock, sni_name, ctx: tls.sni.append(sni_name)
    return tls


# -- one outbox delivery attempt ----------------------------------------------------------------
class RecordingOutboxStore:
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


def attempt_delivery(url: str, *, secret: str, delivery_id: str, attempts: int = 0,
                     allow_private: bool = False, timeout_s: float = 5.0,
                     schedule: tuple[float, ...] = (0.0,)) -> list[tuple]:
    """Attempt number `attempts + 1` of one delivery by a real OutboxWorker (by default a
    one-step schedule: a failure gives up at once) → the store calls it made."""
    from compound.service.outbox import OutboxWorker
    from compound.service.settings import Settings
    from compound.service.store.base import Delivery

    store = RecordingOutboxStore()
    settings = Settings(allow_private_webhooks=allow_private, webhook_schedule=schedule,
                        webhook_jitter=0.0, webhook_timeout_s=timeout_s)

    async def main():
        async with httpx.AsyncClient(follow_redirects=False) as http:  # what run() would create
            worker = OutboxWorker(store, settings, secret, http=http)
            now = time.time()
            await worker._attempt(Delivery(id=delivery_id, job_id="job-1", url=url,
                                           payload={"job_id": "job-1", "status": "succeeded"},
                                           status="pending", attempts=attempts,
                                           next_attempt_at=now, created_at=now))

    asyncio.run(main())
    return store.calls
