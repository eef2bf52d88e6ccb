"""Refuse webhook URLs that point into our own network (SSRF), unless config allows it.

A job's `webhook_url` makes the service send a POST wherever the caller says. Without this
check anyone with an API key could make it hit loopback/admin ports or cloud metadata
(169.254.169.254). Checked at submission and again right before each delivery (DNS can change).

DNS rebinding (a name that answers a public address to the check and an internal one to the
connect) is closed by pinning: `check_webhook_url` resolves the host once and returns the
vetted addresses, and `post_pinned` sends the delivery to exactly one of them, never to a new
lookup of the name (`compound_models.netpolicy`, shared with the whisper node's URL fetch:
the address policy, the lookup, and the Host header / SNI that keep the real name). Vetted
addresses are tried in resolver order while the connection fails; each pinned POST uses its
own client. The chain Truss never imports this module (it runs chains synchronously, without
the outbox), so it does not bundle compound_models. Proxies from the environment are not used on the pinned path (a proxy would resolve the name
itself, and httpcore's CONNECT tunnel verifies TLS against the URL host, i.e. the IP).
"""
from __future__ import annotations

import socket
from typing import Optional, Union
from urllib.parse import urlsplit

import httpx
from compound_models.netpolicy import is_public, parse_address, pin, resolve


class UnsafeURL(ValueError):
    """The URL is refused by policy (scheme, credentials, non-public address): final."""


class UnresolvableURL(UnsafeURL):
    """The URL's host did not resolve. Maybe only for now (EAI_AGAIN, a receiver's DNS briefly
    down, NXDOMAIN while a record is being fixed), so a delivery retries it on its schedule; a
    job submission still answers 400 (an UnsafeURL), where the caller can fix a typo at once."""


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
        addresses = resolve(parts.hostname, port)
    except socket.gaierror as exc:
        raise UnresolvableURL(f"webhook_url host {parts.hostname!r} does not resolve: {exc}") from exc
    if not addresses:
        raise UnresolvableURL(f"webhook_url host {parts.hostname!r} does not resolve: no addresses")
    for text in addresses:
        ip = parse_address(text)
        if not is_public(ip):
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
    target, pinned_headers, extensions = pin(url)
    # A scoped IPv6 address (fe80::1%eth0) cannot be written into a URL; it is link-local, so
    # check_webhook_url never vets one: skip it rather than connect by name.
    pinnable = [a for a in addresses if "%" not in a]
    if not pinnable:
        raise UnsafeURL(f"webhook_url host {target.host!r}: no vetted address to connect to")
    headers = {**headers, **pinned_headers}
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
