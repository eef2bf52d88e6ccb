"""Call a Truss Model method in-process the way Truss's server does for `(self, request)`
signatures: with a starlette Request carrying the JSON body."""
from __future__ import annotations

import asyncio
import json

import starlette.requests


def json_request(body) -> starlette.requests.Request:
    raw = json.dumps(body).encode()

    async def receive():
        return {"type": "http.request", "body": raw, "more_body": False}

    scope = {"type": "http", "method": "POST", "headers": [(b"content-type", b"application/json")]}
    return starlette.requests.Request(scope, receive)


def call(method, body):
    """Run `await method(request)` for a JSON body, from sync test code."""
    return asyncio.run(method(json_request(body)))
