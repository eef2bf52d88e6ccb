"""A real HTTP webhook receiver on a loopback port, for tests.

Records every POST (raw body + headers). `status_codes` scripts the answers: the n-th
request gets status_codes[n] (the last one repeats), so "down for two tries, then up"
is `[503, 503, 200]`.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Received:
    path: str
    headers: dict
    body: bytes
    at: float


class WebhookReceiver:
    def __init__(self, status_codes=(200,)):
        self.status_codes = list(status_codes)
        self.received: list[Received] = []
        self._cond = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                with receiver._cond:
                    index = len(receiver.received)
                    receiver.received.append(
                        Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body,
                                 time.time()))
                    receiver._cond.notify_all()
                codes = receiver.status_codes
                self.send_response(codes[min(index, len(codes) - 1)])
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/hook"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> "WebhookReceiver":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()

    def wait_for(self, count: int, timeout_s: float = 30.0) -> list[Received]:
        with self._cond:
            if not self._cond.wait_for(lambda: len(self.received) >= count, timeout_s):
                raise AssertionError(f"expected {count} webhook(s), got {len(self.received)}")
            return list(self.received)
