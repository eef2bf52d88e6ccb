"""Refuse webhook URLs that point into our own network (SSRF), unless config allows it.

A job's `webhook_url` makes the service send a POST wherever the caller says. Without this
check anyone with an API key could make it hit loopback/admin ports or cloud metadata
(169.254.169.254). Checked at submission and again right before each delivery (DNS can change).

DNS rebinding (a name that answers a public address to the check and an internal one to the
connect) is closed by pinning: `check_webhook_url` resolves the host once and returns the
vetted addresses, and `post_pinned` sends the delivery to exactly one of them, never to a new
lookup of the name. The request goes to the URL with the vetted IP literal as its host, the
original `host[:port]` in the `Host` header and, for https, the original name as the
`sni_hostname` extension, which httpcore passes as `server_hostname` to
`SSLContext.wrap_socket`, so SNI and certificate hostname verification are against the real
name, not the IP. Vetted addresses are tried in resolver order while the connection fails.
Each pinned POST uses its own client: httpcore pools connections by (scheme, IP, port) only,
so a pooled connection must never serve another name whose certificate was not checked.
Proxies from the environment are not used on the pinned path (a proxy would resolve the name
itself, and httpcore's CONNECT tunnel verifies TLS against the URL host, i.e. the IP).
"""
from __future__ import annotations

import ipaddress
import socket
from typing import Optional, Union
from urllib.parse import urlsplit

import httpx


class UnsafeURL(ValueError):
    """The URL is refused by policy (scheme, credentials, non-public address): final."""


class UnresolvableURL(UnsafeURL):
    """The URL's host did not resolve. Maybe only for now (EAI_AGAIN, a receiver's DNS briefly
    down, NXDOMAIN while a record is being fixed), so a delivery retries it on its schedule; a
    job submission still answers 400 (an UnsafeURL), where the caller can fix a typo at once."""


_NAT64 = ipaddress.ip_network("64:ff9b::/96")  # well-known NAT64 prefix: an IPv4 address inside
_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")  # deprecated ::a.b.c.d (and ::, ::1)


def _is_private(ip: ipaddress._BaseAddress) -> bool:
    """True unless `ip` is a globally routable unicast address. Refuses everything that is not
    `is_global` (private, loopback, link-local, carrier-grade NAT 100.64.0.0/10 where cloud
    metadata such as 100.100.100.200 lives, benchmarking, documentation, 0.0.0.0, ...), and
    IPv6 forms that carry an IPv4 address (IPv4-mapped, 6to4 2002::/16, NAT64 64:ff9b::/96)
    unless that IPv4 address is public. Teredo (2001::/32) and IPv4-compatible (::/96)
    addresses are refused outright."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.teredo is not None or ip in _IPV4_COMPATIBLE:
            return True
        embedded = ip.ipv4_mapped or ip.sixtofour
        if embedded is None and ip in _NAT64:
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is not None:  # the packets end up at that IPv4 address: judge it
            ip = embedded
    return (not ip.is_global or ip.is_private or ip.is_loopback or ip.is_link_local
            or ip.is_multicast or ip.is_reserved or ip.is_unspecified)


def check_webhook_url(url: str, allow_private: bool = False) -> Optional[list[str]]:
    """Raise UnsafeURL with a message naming the problem.

    Returns the vetted addresses (deduplicated, in resolver order): the only ones a delivery to
    this URL may connect to (see `post_pinned`). With `allow_private` the host is not resolved
    and None is returned: nothing to pin, deliver by name (local development).
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise UnsafeURL(f"webhook_url must be http(s), got scheme {parts.scheme!r}")
    if not parts.hostname:
        raise UnsafeURL("webhook_url has no host")
    if parts.username or parts.password:
        raise UnsafeURL("webhook_url must not contain credentials")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        raise UnsafeURL(f"webhook_url has an invalid port ({exc})") from exc
    if allow_private:
        return None
    try:
        infos = socket.getaddrinfo(parts.hostname, port, proto=socket.IPPROTO_TCP)
    except socket.gaierror as exc:
        raise UnresolvableURL(f"webhook_url host {parts.hostname!r} does not resolve: {exc}") from exc
    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    if not addresses:
        raise UnresolvableURL(f"webhook_url host {parts.hostname!r} does not resolve: no addresses")
    for text in addresses:
        ip = ipaddress.ip_address(text.split("%")[0])
        if _is_private(ip):
            raise UnsafeURL(
                f"webhook_url host {parts.hostname!r} resolves to non-public address {ip}; "
                "private/loopback webhooks are refused (allow with --allow-private-webhooks or "
                "COMPOUND_ALLOW_PRIVATE_WEBHOOKS=1)")
    return addresses


# Only a webhook answer's status and headers are used (2xx, 410, Retry-After). Its body is read
# this far at most (a short one entirely, so the connection can be reused), never further: the
# receiver is chosen by the API client and could answer with gigabytes.
MAX_RESPONSE_BYTES = 64 * 1024


async def discard_body(response: httpx.Response, limit: int = MAX_RESPONSE_BYTES) -> None:
    """Read at most `limit` bytes of a streamed `response`'s body (raw: nothing is
    decompressed), then close it. Errors while reading are ignored: the status is known."""
    try:
        read = 0
        async for chunk in response.aiter_raw():
            read += len(chunk)
            if read >= limit:
                break
    except (httpx.HTTPError, httpx.StreamError):  # StreamError: a body already read (mocks)
        pass
    finally:
        await response.aclose()


async def post_pinned(url: str, addresses: list[str], *, content: bytes, headers: dict[str, str],
                      timeout: Union[float, httpx.Timeout]) -> httpx.Response:
    """POST `content` to `url` over a connection to one of `addresses` (tried in order while
    the connection fails), never to a new resolution of the URL's host. Raises httpx errors
    like `AsyncClient.post` (a ConnectError names the addresses tried). The response comes back
    closed: status and headers only, its body read no further than `discard_body` does."""
    target = httpx.URL(url)
    # A scoped IPv6 address (fe80::1%eth0) cannot be written into a URL; it is link-local, so
    # check_webhook_url never vets one: skip it rather than connect by name.
    pinnable = [a for a in addresses if "%" not in a]
    if not pinnable:
        raise UnsafeURL(f"webhook_url host {target.host!r}: no vetted address to connect to")
    headers = {**headers, "Host": target.netloc.decode("ascii")}  # host[:port], IPv6 in brackets, IDNA
    extensions = {"sni_hostname": target.raw_host.decode("ascii")} if target.scheme == "https" else {}
    # A fresh client per delivery with an explicit transport: no pooled connection is shared
    # across names, and no environment proxy is used (see the module docstring).
    async with httpx.AsyncClient(transport=httpx.AsyncHTTPTransport(), follow_redirects=False,
                                 timeout=timeout) as client:
        for index, address in enumerate(pinnable):
            request = client.build_request("POST", target.copy_with(host=address), content=content,
                                           headers=headers, extensions=extensions)
            try:
                response = await client.send(request, stream=True)
            except httpx.ConnectError as exc:
                if index == len(pinnable) - 1:
                    raise httpx.ConnectError(
                        f"{exc} (connecting to {', '.join(pinnable)}: the vetted addresses of "
                        f"{target.host!r})", request=request) from exc
                continue
            await discard_body(response)
            return response
    raise AssertionError("unreachable")  # pragma: no cover
