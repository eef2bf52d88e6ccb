"""HTTP calls to model nodes, with failures classified into NodeError kinds.

Sync: POST {base}/predict. Async (Baseten async inference): POST {base}/async_predict with
`webhook_endpoint`; the output arrives later as a webhook body `{request_id, data, errors, ...}`.
Streaming: POST {base}/predict with `stream: true`, bytes passed through as they arrive.
"""
from __future__ import annotations

import base64
import re
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator, Optional

import httpx

from compound.service.endpoints import NodeEndpoints
from compound.service.graph import NodeError, Reply

_ERROR_SNIPPET = 300


def _snippet(response: httpx.Response) -> str:
    try:
        text = response.text
    except Exception:  # undecodable body
        text = repr(response.content[:_ERROR_SNIPPET])
    text = " ".join(text.split())
    return text[:_ERROR_SNIPPET]


def check_status(response: httpx.Response, url: str) -> None:
    if response.status_code >= 500:
        raise NodeError("5xx", f"HTTP {response.status_code} from {url}: {_snippet(response)}")
    if response.status_code >= 400:
        raise NodeError("4xx", f"HTTP {response.status_code} from {url}: {_snippet(response)}")


def transport_error(exc: httpx.HTTPError, url: str) -> NodeError:
    if isinstance(exc, httpx.TimeoutException):
        return NodeError("timeout", f"{type(exc).__name__} calling {url}")
    if isinstance(exc, (httpx.ConnectError, httpx.RemoteProtocolError, httpx.ReadError,
                        httpx.WriteError, httpx.NetworkError)):
        return NodeError("connect", f"{type(exc).__name__} calling {url}: {exc}")
    return NodeError("connect", f"{type(exc).__name__} calling {url}: {exc}")


def reply_from_response(response: httpx.Response, body: dict, url: str) -> Reply:
    content_type = response.headers.get("content-type", "")
    if content_type.startswith("application/json"):
        try:
            data = response.json()
        except ValueError as exc:
            raise NodeError("schema", f"invalid JSON from {url}: {exc}") from exc
        return Reply(data=data, content=response.content, content_type=content_type, body=body)
    return Reply(data=None, content=response.content, content_type=content_type, body=body)


async def predict(http: httpx.AsyncClient, endpoints: NodeEndpoints, node: str, body: dict,
                  timeout_s: float) -> Reply:
    url = endpoints.predict_url(node)
    try:
        response = await http.post(url, json=body, headers=endpoints.headers(), timeout=timeout_s)
    except httpx.HTTPError as exc:
        raise transport_error(exc, url) from exc
    check_status(response, url)
    return reply_from_response(response, body, url)


async def submit_async(http: httpx.AsyncClient, endpoints: NodeEndpoints, node: str, body: dict,
                       webhook_url: str, timeout_s: float,
                       max_time_in_queue_s: int = 600) -> str:
    """Queue an async request; returns Baseten's request_id."""
    url = endpoints.async_predict_url(node)
    payload = {
        "model_input": body,
        "webhook_endpoint": webhook_url,
        # Baseten allows 10 s .. 72 h in queue.
        "max_time_in_queue_seconds": int(min(max(max_time_in_queue_s, 10), 259_200)),
    }
    try:
        response = await http.post(url, json=payload, headers=endpoints.headers(), timeout=timeout_s)
    except httpx.HTTPError as exc:
        raise transport_error(exc, url) from exc
    check_status(response, url)
    try:
        request_id = response.json()["request_id"]
    except (ValueError, KeyError, TypeError) as exc:
        raise NodeError("schema", f"async_predict at {url} returned no request_id: {_snippet(response)}") from exc
    return str(request_id)


def reply_from_webhook(payload: dict, body: dict, node: str) -> Reply:
    """Webhook body -> Reply; model errors become NodeError (HTTP 4xx from the model -> '4xx')."""
    errors = payload.get("errors") or []
    if errors:
        text = "; ".join(f"{e.get('code', '?')}: {e.get('message', '')}" if isinstance(e, dict) else str(e)
                         for e in errors)
        kind = "4xx" if re.search(r"\bHTTP 4\d\d\b", text) else "5xx"
        raise NodeError(kind, f"async request {payload.get('request_id')} to {node} failed: {text[:_ERROR_SNIPPET]}")
    data: Any = payload.get("data")
    # Non-JSON outputs (audio) are wrapped by the async server as base64.
    if isinstance(data, dict) and set(data) == {"content_type", "body_base64"}:
        return Reply(data=None, content=base64.b64decode(data["body_base64"]),
                     content_type=data["content_type"], body=body)
    return Reply(data=data, content=b"", content_type="application/json", body=body)


@asynccontextmanager
async def open_stream(http: httpx.AsyncClient, endpoints: NodeEndpoints, node: str, body: dict,
                      timeout_s: float) -> AsyncIterator[tuple[str, AsyncIterator[bytes]]]:
    """Open a streaming predict; yields (content_type, byte iterator). Errors before the first
    byte (connect, 4xx/5xx status) raise NodeError here, so callers can still retry."""
    url = endpoints.predict_url(node)
    request = http.build_request("POST", url, json=body, headers=endpoints.headers(),
                                 timeout=httpx.Timeout(timeout_s))
    try:
        response = await http.send(request, stream=True)
    except httpx.HTTPError as exc:
        raise transport_error(exc, url) from exc
    try:
        if response.status_code >= 400:
            await response.aread()
            check_status(response, url)

        async def chunks() -> AsyncIterator[bytes]:
            try:
                async for chunk in response.aiter_bytes():
                    if chunk:
                        yield chunk
            except httpx.HTTPError as exc:
                raise transport_error(exc, url) from exc

        yield response.headers.get("content-type", "application/octet-stream"), chunks()
    finally:
        await response.aclose()


def new_http_client(timeout_s: Optional[float] = 60.0) -> httpx.AsyncClient:
    # Many concurrent runs share one client; the pool must not be the bottleneck.
    return httpx.AsyncClient(timeout=timeout_s,
                             limits=httpx.Limits(max_connections=200, max_keepalive_connections=50))
