"""Verify Baseten async-webhook signatures.

Baseten signs the raw request body: `X-BASETEN-SIGNATURE: v1=<hex HMAC-SHA256(secret, body)>`.
While a secret is being rotated the header carries one `v1=` value per active secret,
comma-separated; we accept the request when any value matches any of our secrets.
Comparisons are constant-time (`hmac.compare_digest`).
"""
from __future__ import annotations

import hashlib
import hmac
import math
from datetime import datetime, timezone
from typing import Iterable, Optional, Union

MAX_AGE_S = 300.0


class SignatureError(ValueError):
    pass


def sign(secret: str, body: bytes) -> str:
    """The header value Baseten would send (used by the local runtime and by tests)."""
    return "v1=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify(body: bytes, header: Optional[str], secrets: Iterable[str]) -> None:
    """Raise SignatureError unless `header` carries a valid v1 signature of `body`."""
    secrets = [s for s in secrets if s]
    if not secrets:
        raise SignatureError("no webhook secret configured (COMPOUND_BASETEN_WEBHOOK_SECRET)")
    if not header:
        raise SignatureError("missing X-BASETEN-SIGNATURE header")
    offered = []
    for part in header.split(","):
        version, _, value = part.strip().partition("=")
        if version == "v1" and value:
            offered.append(value.strip().lower())
    if not offered:
        raise SignatureError("X-BASETEN-SIGNATURE has no v1=<hex> value")
    expected = [hmac.new(s.encode(), body, hashlib.sha256).hexdigest() for s in secrets]
    # Check every pair (no early exit) so timing says nothing about which one matched.
    ok = False
    for exp in expected:
        for got in offered:
            ok |= hmac.compare_digest(exp, got)
    if not ok:
        raise SignatureError("X-BASETEN-SIGNATURE does not match the request body")


def parse_time(value: Union[str, int, float, None]) -> float:
    """Baseten's `time` field (ISO 8601, e.g. 2024-04-05T22:54:13.130148Z) or epoch seconds."""
    if value is None:
        raise SignatureError("callback body has no `time`")
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise SignatureError(f"callback `time` must be a string or a number, not {type(value).__name__}")
    try:
        seconds = float(value)
    except OverflowError as exc:  # an integer too large for a float
        raise SignatureError("callback `time` is not a finite number") from exc
    except ValueError:
        pass
    else:
        if not math.isfinite(seconds):  # NaN would pass every freshness comparison
            raise SignatureError(f"callback `time` is not a finite number: {value!r}")
        return seconds
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise SignatureError(f"callback `time` is not ISO 8601: {value!r}") from exc
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed.timestamp()


def check_fresh(value, now: float, max_age_s: float = MAX_AGE_S) -> None:
    sent = parse_time(value)
    if now - sent > max_age_s:
        raise SignatureError(f"callback is stale: sent {now - sent:.0f} s ago (limit {max_age_s:.0f} s)")
    if sent - now > max_age_s:
        raise SignatureError("callback `time` is in the future")
