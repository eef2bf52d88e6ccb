"""Download audio from an http(s) URL with SSRF protection and size/time caps.

Every hop (the URL and each redirect target) is checked: its hostname is resolved once and
every resolved address must be public (`ipaddress.is_global` and not multicast; an IPv4
address inside an IPv6 one, IPv4-mapped, 6to4 or NAT64, must be public too; Teredo is
refused) unless `allow_private` is set or the host is in `allowed_hosts`. Redirects are
followed by hand so a public URL cannot bounce the server onto an internal one.

DNS rebinding (a name that answers a public address to the check and an internal one to the
connect) is prevented by pinning: the connection goes to exactly one of the addresses that
were vetted, never to a fresh lookup (`compound_models.netpolicy.pin`: the vetted IP as the
URL's host, the real name for `Host`, SNI and certificate verification). The vetted
addresses are tried in resolver order while a connection is refused. Proxies from the environment are not used (a proxy would resolve the name itself,
and httpcore's CONNECT tunnel verifies TLS against the URL host, i.e. the IP).
"""
from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Iterator
from urllib.parse import urljoin, urlsplit

import httpx

from compound_models.errors import InputError
from compound_models.netpolicy import is_public, parse_address, pin, resolve

FIELD = "url"


def check_url(url: str, *, allow_private: bool, allowed_hosts: tuple[str, ...] = ()) -> list[str]:
    """InputError unless `url` is http(s) and its host resolves only to public addresses.

    Returns the resolved addresses (deduplicated, in resolver order): the only ones a fetch of
    this URL may connect to. `allowed_hosts` (exact host names/IPs, e.g. an internal media
    server) skip the address check.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise InputError(f"only http(s) URLs are accepted, got scheme {parts.scheme or 'none'!r}",
                         field=FIELD)
    host = parts.hostname
    if not host:
        raise InputError("URL has no host", field=FIELD)
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        raise InputError(f"URL has an invalid port ({exc})", field=FIELD) from exc
    try:
        addresses = resolve(host, port)
    except socket.gaierror as exc:
        raise InputError(f"cannot resolve host {host!r} ({exc.strerror})", field=FIELD) from exc
    if not addresses:
        raise InputError(f"cannot resolve host {host!r} (no addresses)", field=FIELD)
    if allow_private or host.lower() in allowed_hosts:
        return addresses
    for text in addresses:
        address = parse_address(text)
        if not is_public(address):
            raise InputError(
                f"URL host {host!r} resolves to a non-public address ({address}); private, "
                "loopback and link-local addresses are refused (model_metadata.allow_private_urls)",
                field=FIELD, status_code=403)
    return addresses


def fetch_audio(url: str, *, max_bytes: int, timeout_s: float, allow_private: bool,
                max_redirects: int = 5, allowed_hosts: tuple[str, ...] = ()) -> bytes:
    """GET `url` (following at most `max_redirects` checked redirects) → body bytes."""
    deadline = time.monotonic() + timeout_s
    timeout = httpx.Timeout(timeout_s, connect=min(10.0, timeout_s))
    for _ in range(max_redirects + 1):
        addresses = check_url(url, allow_private=allow_private, allowed_hosts=allowed_hosts)
        try:
            with _get_pinned(url, addresses, timeout) as response:
                if response.is_redirect:
                    location = response.headers.get("location")
                    if not location:
                        raise InputError(f"URL redirected (HTTP {response.status_code}) "
                                         "without a Location", field=FIELD)
                    url = urljoin(url, location)  # relative to the name, not the pinned IP
                    continue
                if response.status_code >= 400:
                    raise InputError(f"URL answered HTTP {response.status_code}", field=FIELD)
                return _read_capped(response, max_bytes, deadline, timeout_s)
        except httpx.TimeoutException as exc:
            raise InputError(f"download timed out after {timeout_s:.0f} s", field=FIELD,
                             status_code=408) from exc
        except httpx.HTTPError as exc:
            raise InputError(f"could not fetch URL ({type(exc).__name__}: {exc})",
                             field=FIELD) from exc
        except httpx.InvalidURL as exc:
            raise InputError(f"invalid URL ({exc})", field=FIELD) from exc
    raise InputError(f"more than {max_redirects} redirects", field=FIELD)


@contextlib.contextmanager
def _get_pinned(url: str, addresses: list[str], timeout: httpx.Timeout) -> Iterator[httpx.Response]:
    """Stream a GET of `url` over a connection to one of `addresses` (tried in order while
    the connection is refused), never to a new resolution of the URL's host."""
    target, headers, extensions = pin(url)
    # A fresh client (and pool) per hop (see compound_models.netpolicy); an explicit transport
    # also keeps environment proxies out (see the module docstring).
    with httpx.Client(transport=httpx.HTTPTransport(), follow_redirects=False,
                      timeout=timeout) as client:
        for index, address in enumerate(addresses):
            # A scoped IPv6 address (fe80::1%eth0) cannot be written into a URL; it is
            # link-local, so it only got here for a trusted host: connect by name.
            pinned = target if "%" in address else target.copy_with(host=address)
            request = client.build_request("GET", pinned, headers=headers, extensions=extensions)
            try:
                response = client.send(request, stream=True)
            except httpx.ConnectError:
                if index == len(addresses) - 1:
                    raise
                continue
            try:
                yield response
            finally:
                response.close()
            return


def _read_capped(response: httpx.Response, max_bytes: int, deadline: float, timeout_s: float) -> bytes:
    declared = response.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > max_bytes:
        raise InputError(f"file is {int(declared)} bytes; the limit is {max_bytes}",
                         field=FIELD, status_code=413)
    body = bytearray()
    for piece in response.iter_bytes():
        body += piece
        if len(body) > max_bytes:
            raise InputError(f"file is larger than the limit of {max_bytes} bytes",
                             field=FIELD, status_code=413)
        if time.monotonic() > deadline:  # a slow drip never trips httpx's per-read timeout
            raise InputError(f"download took longer than {timeout_s:.0f} s", field=FIELD,
                             status_code=408)
    return bytes(body)
