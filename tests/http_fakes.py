"""Real loopback HTTP servers the tests control, in threads of the test process (so they outlive
a `kill -9` of a service under test): a webhook receiver and fake model nodes.

- `WebhookReceiver` records every POST (raw body, headers, decoded payload, the status it
  answered) and can verify Standard Webhooks signatures (`secret`), answer from a script
  (status codes, slow answers, Retry-After), hand each payload to `on_payload` (e.g. a callback
  registry) and be started late / restarted on its fixed port.
- `FakeNode` stands in for a model Truss: `respond(body, n)` scripts every call of
  `POST /predict` and of Baseten-style `POST /async_predict` (the result is then POSTed,
  optionally Baseten-signed, to `webhook_endpoint` as `{request_id, data, errors}`).
- `StepNode` is a `FakeNode` driven by the request body instead (`{"step", "text", "sleep_s",
  "fail_times", "stream_chunks"}`), for a service that runs in another process; `hold(step)`
  keeps a step in flight for as long as the test needs.
"""
from __future__ import annotations

import json
import socket
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Optional

import httpx
from standardwebhooks import Webhook

from compound.service import baseten_signature


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_closed_port_url() -> str:
    """A URL nobody listens on (bound then released)."""
    return f"http://127.0.0.1:{free_port()}"


def wait_for(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.05):
    """Poll `predicate` until it returns something truthy, and return that."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):  # keep test output readable
        pass

    def read_body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("content-length") or 0))

    def send(self, code: int, data: bytes, content_type: str, headers: Optional[dict] = None) -> None:
        self.send_response(code)
        self.send_header("content-type", content_type)
        self.send_header("content-length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def send_json(self, code: int, obj: Any, headers: Optional[dict] = None) -> None:
        self.send(code, json.dumps(obj).encode(), "application/json", headers)


class LoopbackServer:
    """A ThreadingHTTPServer on 127.0.0.1 in a daemon thread; subclasses answer POSTs in
    `handle_post(handler)`. The port is fixed when the object is made (a free one by default), so
    `url` can be handed out before `start()` (connection refused until then) and a stopped server
    starts again at the same address. Usable as a context manager (start/stop)."""

    def __init__(self, port: int = 0):
        self.port = port or free_port()
        self._httpd: Optional[ThreadingHTTPServer] = None
        self._stopping = threading.Event()
        owner = self

        class Handler(_Handler):
            def do_POST(self):
                try:
                    owner.handle_post(self)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up waiting (timeouts, slow-receiver tests)

        self._handler_cls = Handler  # also served by hand, e.g. over TLS

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def handle_post(self, handler: _Handler) -> None:
        raise NotImplementedError

    def start(self):
        self._stopping.clear()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", self.port), self._handler_cls)
        self._httpd.daemon_threads = True
        # a short poll keeps stop() (which waits for the loop to notice) quick
        threading.Thread(target=self._httpd.serve_forever, args=(0.05,), daemon=True).start()
        return self

    def stop(self) -> None:
        self._stopping.set()  # wakes `pause`: nothing lingers in a sleep after the test
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def pause(self, seconds: float) -> bool:
        """Sleep `seconds`, cut short by `stop()`; True when the whole time passed."""
        return not self._stopping.wait(seconds)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


@dataclass
class Received:
    path: str
    headers: dict  # lower-case names
    body: bytes  # raw, as signed
    payload: Any  # verified payload; without a secret the JSON body (None if not JSON)
    verified: Optional[bool]  # None without a secret
    status: int  # what the receiver answered
    at: float


class WebhookReceiver(LoopbackServer):
    """Records every POST in `requests`. With `secret` it verifies each one with
    standardwebhooks.Webhook(secret).verify (`verified`; a failure is recorded, not raised).
    `script` is consumed one entry per request, then every answer is 200: an int status code,
    ("sleep", seconds) to answer 200 only after sleeping (a slow receiver), or
    ("retry_after", status, seconds). `on_payload(payload)` runs for each request once it is
    recorded, before the answer (e.g. to resolve a callback registry)."""

    def __init__(self, secret: Optional[str] = None, port: int = 0, script: Optional[list] = None,
                 on_payload: Optional[Callable[[Any], None]] = None):
        super().__init__(port)
        self.secret = secret
        self.script = list(script or [])
        self.on_payload = on_payload
        self.requests: list[Received] = []
        self._cond = threading.Condition()

    def handle_post(self, handler: _Handler) -> None:
        raw = handler.read_body()
        headers = {k.lower(): v for k, v in handler.headers.items()}
        payload, verified = self._open(raw, headers)
        with self._cond:
            action = self.script.pop(0) if self.script else 200
        extra = {}
        if isinstance(action, tuple) and action[0] == "sleep":
            self.pause(action[1])
            status = 200
        elif isinstance(action, tuple) and action[0] == "retry_after":
            status, extra = action[1], {"Retry-After": str(action[2])}
        else:
            status = int(action)
        with self._cond:
            self.requests.append(Received(handler.path, headers, raw, payload, verified, status, time.time()))
            self._cond.notify_all()
        if self.on_payload is not None:
            self.on_payload(payload)
        handler.send_json(status, {"ok": 200 <= status < 300}, extra)

    def _open(self, raw: bytes, headers: dict) -> tuple[Any, Optional[bool]]:
        if self.secret is None:
            try:
                return json.loads(raw), None
            except ValueError:
                return None, None
        try:
            return Webhook(self.secret).verify(raw, headers), True
        except Exception as exc:  # record the failure; the test asserts on it
            return {"verify_error": repr(exc)}, False

    def successes(self) -> list[Received]:
        return [r for r in self.requests if 200 <= r.status < 300]

    def wait_for(self, count: int, timeout_s: float = 30.0) -> list[Received]:
        """Block until `count` requests are recorded; returns them all."""
        with self._cond:
            if not self._cond.wait_for(lambda: len(self.requests) >= count, timeout_s):
                raise AssertionError(f"expected {count} webhook(s), got {len(self.requests)}")
            return list(self.requests)


# -- fake model nodes ---------------------------------------------------------------------

@dataclass
class Status:
    code: int
    text: str = "fake failure"
    content_type: str = "text/plain; charset=utf-8"


@dataclass
class Sleep:
    seconds: float
    then: Any = field(default_factory=lambda: {"ok": True})


@dataclass
class Raw:
    content: bytes
    content_type: str = "audio/wav"


@dataclass
class Chunks:
    chunks: list
    delay_s: float = 0.0
    content_type: str = "audio/wav"
    gate: Optional[threading.Event] = None  # set by the test to let the chunks after the first go


_STOPPED = object()


class FakeNode(LoopbackServer):
    """A model node whose answers `respond(body, n)` scripts: called with the predict body and
    the call index, it returns a dict/list (JSON 200), `Status(code)`, `Sleep(seconds, then)`,
    `Raw(bytes, content_type)` or `Chunks([...], delay_s, gate)` (a streamed body; with a `gate`
    the chunks after the first wait until the test sets it). The same script answers
    `POST /predict` and `POST /async_predict`, whose result is POSTed to `webhook_endpoint`
    (signed with `baseten_secret` if given), retried while the receiver is unreachable or
    answers 5xx (it may be a service being restarted). `calls` holds every predict body (sync
    and async), `async_calls` every async envelope."""

    def __init__(self, respond: Optional[Callable[[dict, int], Any]] = None, *, port: int = 0,
                 baseten_secret: Optional[str] = None):
        super().__init__(port)
        self.respond = respond or (lambda body, n: {"ok": True, "echo": body})
        self.baseten_secret = baseten_secret
        self.calls: list[dict] = []
        self.async_calls: list[dict] = []
        self.stream_finished = threading.Event()
        self._lock = threading.Lock()

    def handle_post(self, handler: _Handler) -> None:
        body = json.loads(handler.read_body() or b"{}")
        if handler.path.startswith("/async_predict"):
            return self._async_predict(handler, body)
        action = self._run_script(body)
        if action is _STOPPED:
            return
        if isinstance(action, Status):
            handler.send(action.code, action.text.encode(), action.content_type)
        elif isinstance(action, Raw):
            handler.send(200, action.content, action.content_type)
        elif isinstance(action, Chunks):
            self._stream(handler, action)
        else:
            handler.send_json(200, action)

    def _run_script(self, body: dict) -> Any:
        with self._lock:
            n = len(self.calls)
            self.calls.append(body)
        action = self.respond(body, n)
        while isinstance(action, Sleep):
            if not self.pause(action.seconds):
                return _STOPPED
            action = action.then
        return action

    def _stream(self, handler: _Handler, action: Chunks) -> None:
        handler.send_response(200)
        handler.send_header("content-type", action.content_type)
        handler.send_header("transfer-encoding", "chunked")
        handler.end_headers()
        for i, chunk in enumerate(action.chunks):
            if i:
                if action.gate is not None:
                    action.gate.wait(30)
                if not self.pause(action.delay_s):
                    return
            if chunk:
                handler.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                handler.wfile.flush()
        handler.wfile.write(b"0\r\n\r\n")
        handler.wfile.flush()
        self.stream_finished.set()

    def _async_predict(self, handler: _Handler, envelope: dict) -> None:
        with self._lock:
            self.async_calls.append(envelope)
        request_id = uuid.uuid4().hex
        handler.send_json(201, {"request_id": request_id})
        threading.Thread(target=self._complete, args=(request_id, envelope), daemon=True).start()

    def _complete(self, request_id: str, envelope: dict) -> None:
        action = self._run_script(envelope.get("model_input", {}))
        if action is _STOPPED:
            return
        data, errors = action, []
        if isinstance(action, Status):
            data = None
            errors = [{"code": "MODEL_PREDICT_ERROR", "message": f"HTTP {action.code}: {action.text}"}]
        payload = json.dumps({"request_id": request_id, "model_id": "fake", "deployment_id": "fake",
                              "type": "async_request_completed", "time": time.time(),
                              "data": data, "errors": errors}).encode()
        headers = {"content-type": "application/json", "X-BASETEN-REQUEST-ID": request_id}
        if self.baseten_secret:
            headers["X-BASETEN-SIGNATURE"] = baseten_signature.sign(self.baseten_secret, payload)
        deadline = time.monotonic() + 120  # covers a service restart on a slow machine
        while time.monotonic() < deadline:
            try:
                r = httpx.post(envelope["webhook_endpoint"], content=payload, headers=headers, timeout=5)
                if r.status_code < 500:
                    return
            except httpx.HTTPError:
                pass
            if not self.pause(0.25):
                return


class StepNode(FakeNode):
    """A FakeNode scripted by the request body, for a service in another process:
    {"step": name, "text": ..., "sleep_s": s, "fail_times": n, "stream_chunks": k} sleeps, fails
    the first n runs of that step with 503, then answers {"step", "echo": text.upper(), "call"}
    (or, with stream_chunks, k pieces of audio-like bytes). `runs[step]` counts the runs that got
    past hold and sleep (the durability tests assert a step is not re-executed); `started` and
    `async_submits` count calls as they arrive. `hold(step)` makes that step's calls (sync, and
    async completions) wait until the returned event is set: a test can keep a step in flight for
    as long as it needs (e.g. until it has killed the service) instead of guessing a sleep that a
    slow machine may outlast."""

    def __init__(self, port: int = 0, baseten_secret: Optional[str] = None):
        super().__init__(self._step, port=port, baseten_secret=baseten_secret)
        self.runs: Counter = Counter()
        self._holds: dict[str, threading.Event] = {}

    @property
    def started(self) -> Counter:
        with self._lock:
            return Counter(body.get("step", "?") for body in self.calls)

    @property
    def async_submits(self) -> Counter:
        with self._lock:
            return Counter(env.get("model_input", {}).get("step", "?") for env in self.async_calls)

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

    def _step(self, body: dict, n: int) -> Any:
        step = body.get("step", "?")
        with self._lock:
            gate = self._holds.get(step)
        if gate is not None:
            gate.wait(60)
        self.pause(float(body.get("sleep_s", 0)))
        with self._lock:
            self.runs[step] += 1
            run = self.runs[step]
        if run <= int(body.get("fail_times", 0)):
            return Status(503, json.dumps({"error": f"fake failure {run}"}), "application/json")
        if body.get("stream_chunks"):  # a streaming tail (like TTS audio): bytes in pieces
            text = body.get("text", "")
            return Chunks([f"{text}:{i};".encode() for i in range(int(body["stream_chunks"]))], delay_s=0.02)
        return {"step": step, "echo": str(body.get("text", "")).upper(), "call": run}
