"""A Truss's own model.py in-process: load its Model class from the Truss folder, and call a
method the way Truss's server does for `(self, request)` signatures (a starlette Request
carrying the JSON body)."""
from __future__ import annotations

import asyncio
import importlib.util
import json
from pathlib import Path

import starlette.requests


def truss_model_class(truss_dir: Path, module_name: str):
    """The `Model` class of `truss_dir/model/model.py`, imported as `module_name`."""
    spec = importlib.util.spec_from_file_location(module_name, truss_dir / "model" / "model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.Model


def json_request(body) -> starlette.requests.Request:
    raw = json.dumps(body).encode()

    async def receive():
        return {"type": "http.request", "body": raw, "more_body": False}

    scope = {"type": "http", "method": "POST", "headers": [(b"content-type", b"application/json")]}
    return starlette.requests.Request(scope, receive)


def call(method, body):
    """Run `await method(request)` for a JSON body, from sync test code."""
    return asyncio.run(method(json_request(body)))
