"""Real local HTTP servers the chain-service tests control: a fake model node (stands in for a
Truss; the GPU models cannot run here and the tests need to count calls and inject faults) and
a webhook receiver that verifies Standard Webhooks signatures with the standardwebhooks library.
Both run in the test process (threads), so they outlive a `kill -9` of the service."""
from __future__ import annotations

import json
import socket
import threading
import time
import uuid
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable, Optional

import httpx
from standardwebhooks import Webhook

from compound.service import baseten_signature


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Server:
    def __init__(self, handler_cls, port: int = 0):
        self._handler_cls = handler_cls
        self.port = port or free_port()
        self._httpd: Optional[ThreadingHTTPServer] = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "_Server":
        self._httpd = ThreadingHTTPServer(("127.0.0.1", self.port), self._handler_cls)
        self._httpd.daemon_threads = True
        self._httpd.owner = self
        threading.Thread(target=self._httpd.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None


class _Quiet(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):  # keep test output readable
        pass

    def _json(self, code: int, obj, headers: Optional[dict] = None) -> None:
        data = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("content-length") or 0))


class FakeNode(_Server):
    """POST /predict with {"step": name, "text": ..., "sleep_s": s, "fail_times": n}: sleeps,
    fails the first n calls of that step with 503, then answers {"step", "echo": text.upper()}.
    `calls[step]` counts every call (the durability tests assert a step is not re-executed).
    `hold(step)` makes that step's calls (sync, and async completions) wait until the returned
    event is set: a test can keep a step in flight for as long as it needs (e.g. until it has
    killed the service) instead of guessing a sleep that a slow machine may outlast."""

    def __init__(self, port: int = 0, baseten_secret: Optional[str] = None):
        self.calls: Counter = Counter()
        self.started: Counter = Counter()
        self.async_submits: Counter = Counter()
        self.baseten_secret = baseten_secret
        self._holds: dict[str, threading.Event] = {}
        self._lock = threading.Lock()
        outer = self

        class Handler(_Quiet):
            def do_POST(self):
                if self.path.startswith("/async_predict"):
                    return outer._async_predict(self, json.loads(self._body() or b"{}"))
                body = json.loads(self._body() or b"{}")
                step = body.get("step", "?")
                with outer._lock:
                    outer.started[step] += 1
                outer._wait_if_held(step)
                time.sleep(float(body.get("sleep_s", 0)))
                with outer._lock:
                    outer.calls[step] += 1
                    n = outer.calls[step]
                if n <= int(body.get("fail_times", 0)):
                    return self._json(503, {"error": f"fake failure {n}"})
                if body.get("stream_chunks"):  # a streaming tail (like TTS audio): bytes in pieces
                    pieces = [f"{body.get('text', '')}:{i};".encode() for i in range(int(body["stream_chunks"]))]
                    self.send_response(200)
                    self.send_header("content-type", "audio/wav")
                    self.send_header("content-length", str(sum(map(len, pieces))))
                    self.end_headers()
                    for piece in pieces:
                        self.wfile.write(piece)
                        self.wfile.flush()
                        time.sleep(0.02)
                    return
                self._json(200, {"step": step, "echo": str(body.get("text", "")).upper(), "call": n})

        super().__init__(Handler, port)

    def hold(self, step: str) -> threading.Event:
        """Calls of `step` block until the returned event is set (at most 60 s)."""
        with self._lock:
            return self._holds.setdefault(step, threading.Event())

    def stop(self) -> None:
        with self._lock:
            holds = list(self._holds.values())
        for gate in holds:  # a failed test must not leave calls blocked
            gate.set()
        super().stop()

    def _wait_if_held(self, step: str) -> None:
        with self._lock:
            gate = self._holds.get(step)
        if gate is not None:
            gate.wait(60)

    def _async_predict(self, handler, req: dict) -> None:
        """Baseten-style async: answer a request_id now, run the model input later and POST the
        signed webhook to `webhook_endpoint`, retrying while it is unreachable (the service may
        be down — the durability test kills it right here)."""
        body = req.get("model_input", {})
        step = body.get("step", "?")
        request_id = uuid.uuid4().hex
        with self._lock:
            self.async_submits[step] += 1
        handler._json(200, {"request_id": request_id})

        def later():
            self._wait_if_held(step)
            time.sleep(float(body.get("sleep_s", 0)))
            with self._lock:
                self.calls[step] += 1
            payload = json.dumps({
                "request_id": request_id, "model_id": "fake", "deployment_id": "fake",
                "type": "async_request_completed", "time": time.time(),
                "data": {"step": step, "echo": str(body.get("text", "")).upper(), "call": self.calls[step]},
                "errors": []}).encode()
            headers = {"content-type": "application/json", "X-BASETEN-REQUEST-ID": request_id}
            if self.baseten_secret:
                headers["X-BASETEN-SIGNATURE"] = baseten_signature.sign(self.baseten_secret, payload)
            deadline = time.monotonic() + 120  # covers a service restart on a slow machine
            while time.monotonic() < deadline:
                try:
                    r = httpx.post(req["webhook_endpoint"], content=payload, headers=headers, timeout=5)
                    if r.status_code < 500:
                        return
                except httpx.HTTPError:
                    pass
                time.sleep(0.25)

        threading.Thread(target=later, daemon=True).start()


class WebhookReceiver(_Server):
    """Records every POST; verifies it with standardwebhooks.Webhook(secret).verify.
    `script` is consumed one entry per request: an int status code, ("sleep", seconds) to
    answer 200 only after sleeping (a slow receiver), or ("retry_after", status, seconds)."""

    def __init__(self, secret: str, port: int = 0, script: Optional[list] = None):
        self.secret = secret
        self.requests: list[dict] = []  # {"headers", "body", "verified", "status", "at"}
        self.script = list(script or [])
        self._lock = threading.Lock()
        self.got_one = threading.Event()
        outer = self

        class Handler(_Quiet):
            def do_POST(self):
                raw = self._body()
                headers = {k.lower(): v for k, v in self.headers.items()}
                try:
                    payload = Webhook(outer.secret).verify(raw, headers)
                    verified = True
                except Exception as exc:  # record the failure; the test asserts on it
                    payload, verified = {"verify_error": repr(exc)}, False
                with outer._lock:
                    action = outer.script.pop(0) if outer.script else 200
                extra = {}
                if isinstance(action, tuple) and action[0] == "sleep":
                    time.sleep(action[1])
                    status = 200
                elif isinstance(action, tuple) and action[0] == "retry_after":
                    status, extra = action[1], {"Retry-After": str(action[2])}
                else:
                    status = int(action)
                with outer._lock:
                    outer.requests.append({"headers": headers, "payload": payload, "verified": verified,
                                           "status": status, "at": time.time()})
                if 200 <= status < 300:
                    outer.got_one.set()
                try:
                    self._json(status, {"ok": 200 <= status < 300}, extra)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the sender gave up waiting (slow-receiver test)

        super().__init__(Handler, port)

    def successes(self) -> list[dict]:
        return [r for r in self.requests if 200 <= r["status"] < 300]


def wait_for(predicate: Callable[[], bool], timeout: float, what: str, interval: float = 0.05):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
