"""Refuse webhook URLs that point into our own network (SSRF), unless config allows it.

A job's `webhook_url` makes the service send a POST wherever the caller says. Without this
check anyone with an API key could make it hit loopback/admin ports or cloud metadata
(169.254.169.254). Checked at submission and again right before each delivery (DNS can change).
"""
from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit


class UnsafeURL(ValueError):
    pass


def _is_private(ip: ipaddress._BaseAddress) -> bool:
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return (ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_multicast
            or ip.is_reserved or ip.is_unspecified)


def check_webhook_url(url: str, allow_private: bool = False) -> None:
    """Raise UnsafeURL with a message naming the problem."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise UnsafeURL(f"webhook_url must be http(s), got scheme {parts.scheme!r}")
    if not parts.hostname:
        raise UnsafeURL("webhook_url has no host")
    if parts.username or parts.password:
        raise UnsafeURL("webhook_url must not contain credentials")
    if allow_private:
        return
    try:
        infos = socket.getaddrinfo(parts.hostname, parts.port or (443 if parts.scheme == "https" else 80),
                                   proto=socket.IPPROTO_TCP)
    except socket.gaierror as exc:
        raise UnsafeURL(f"webhook_url host {parts.hostname!r} does not resolve: {exc}") from exc
    for info in infos:
        ip = ipaddress.ip_address(info[4][0].split("%")[0])
        if _is_private(ip):
            raise UnsafeURL(
                f"webhook_url host {parts.hostname!r} resolves to non-public address {ip}; "
                "private/loopback webhooks are refused (allow with --allow-private-webhooks or "
                "COMPOUND_ALLOW_PRIVATE_WEBHOOKS=1)")
