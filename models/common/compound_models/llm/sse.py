"""Server-sent events in the framing OpenAI's streaming API uses."""
from __future__ import annotations

import json

DONE = "data: [DONE]\n\n"
MEDIA_TYPE = "text/event-stream"
# Proxies (nginx, Baseten's ingress) must not buffer a token stream.
HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def event(payload: dict) -> str:
    return f"data: {json.dumps(payload, ensure_ascii=False, separators=(',', ':'))}\n\n"


def parse_events(text: str) -> list:
    """Client side: the `data:` payloads of an SSE body (JSON decoded, '[DONE]' kept as str)."""
    out = []
    for block in text.split("\n\n"):
        for line in block.splitlines():
            if line.startswith("data:"):
                data = line[5:].strip()
                out.append(data if data == "[DONE]" else json.loads(data))
    return out
