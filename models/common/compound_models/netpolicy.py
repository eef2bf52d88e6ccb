"""Where a server may connect on a client's behalf, and how it connects there safely.

Shared by the whisper node's URL fetch (`whisper/fetch.py`) and the chain service's webhook
delivery (`compound.service.netguard`): both send requests to URLs a client chose, so both
must refuse internal addresses (SSRF) and must not be fooled by DNS rebinding. Only the
stdlib and httpx: the chain service imports it without any model code.

- `is_public(ip)`: the address policy.
- `resolve(host, port)`: one lookup, addresses deduplicated in resolver order.
- `pin(url)`: what a request needs to go to a vetted IP while still naming the host: the
  `Host` header and, for https, the `sni_hostname` extension, which httpcore passes as
  `server_hostname` to `SSLContext.wrap_socket`, so SNI and certificate verification are
  against the real name, not the IP. Send each try to `target.copy_with(host=address)`, with a
  fresh client per pinned request: httpcore pools connections by (scheme, IP, port) only, so a
  pooled connection must never serve another name whose certificate was not checked.
"""
from __future__ import annotations

import ipaddress
import socket

import httpx

_NAT64 = ipaddress.ip_network("64:ff9b::/96")  # well-known NAT64 prefix: an IPv4 address inside
_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")  # deprecated ::a.b.c.d (and ::, ::1)

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def is_public(ip: Address) -> bool:
    """True only for a globally routable unicast address. Refuses everything that is not
    `is_global` (private, loopback, link-local, carrier-grade NAT 100.64.0.0/10 where cloud
    metadata such as 100.100.100.200 lives, benchmarking, documentation, 0.0.0.0, ...), and
    IPv6 forms that carry an IPv4 address (IPv4-mapped, 6to4 2002::/16, NAT64 64:ff9b::/96)
    unless that IPv4 address is public. Teredo (2001::/32) and IPv4-compatible (::/96)
    addresses are refused outright."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.teredo is not None or ip in _IPV4_COMPATIBLE:
            return False
        embedded = ip.ipv4_mapped or ip.sixtofour
        if embedded is None and ip in _NAT64:
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is not None:  # the packets end up at that IPv4 address: judge it
            ip = embedded
    return ip.is_global and not (ip.is_private or ip.is_loopback or ip.is_link_local
                                 or ip.is_multicast or ip.is_reserved or ip.is_unspecified)


def parse_address(text: str) -> Address:
    """An address as getaddrinfo writes it; an IPv6 zone ("fe80::1%eth0") is dropped."""
    return ipaddress.ip_address(text.split("%")[0])


def resolve(host: str, port: int) -> list[str]:
    """The addresses `host` resolves to (deduplicated, in resolver order); raises
    socket.gaierror when it does not resolve. Possibly empty."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def pin(url: str) -> tuple[httpx.URL, dict[str, str], dict[str, str]]:
    """(target URL, headers, extensions) for sending a request for `url` to a pinned address:
    send it to `target.copy_with(host=address)` with these headers and extensions."""
    target = httpx.URL(url)
    headers = {"Host": target.netloc.decode("ascii")}  # host[:port], IPv6 in brackets, IDNA
    extensions = {"sni_hostname": target.raw_host.decode("ascii")} if target.scheme == "https" else {}
    return target, headers, extensions
