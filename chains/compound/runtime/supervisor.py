"""Start, watch and stop local services: one process per Truss plus the chain service.

Used by `compound serve`, `compound demo` and the test-suite's fixtures, so all three
run the stack the same way.
"""
from __future__ import annotations

import collections
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable, Optional

import httpx

from compound.services import DEFAULT_PORT_BASE, Service, resolve

LogSink = Callable[[str, str], None]  # (service name, line)


class StackError(RuntimeError):
    """A service could not be started; the message says which one and why."""


def _print_sink(name: str, line: str) -> None:
    sys.stderr.write(f"[{name}] {line}\n")
    sys.stderr.flush()


def humanize_log_line(line: str) -> str:
    """Truss's server logs JSON lines; show their message (and traceback) as plain text."""
    try:
        record = json.loads(line)
    except ValueError:
        return line
    if not isinstance(record, dict) or "message" not in record:
        return line
    text = f"{record.get('levelname', '')} {record['message']}".strip()
    if record.get("exc_info"):
        text += "\n" + record["exc_info"]
    return text


def port_is_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # As uvicorn does: a port in TIME_WAIT after a restart is usable, not "in use".
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def find_free_port_base(host: str = "127.0.0.1", start: int = 18100, span: int = 5) -> int:
    """A port base with `span` consecutive free ports (for tests and parallel stacks)."""
    for base in range(start, start + 5000, 10):
        if all(port_is_free(host, base + i) for i in range(span)):
            return base
    raise StackError(f"no {span} consecutive free ports found from {start}")


def _command(service: Service, host: str, port_base: int) -> list[str]:
    port = str(service.port(port_base))
    if service.truss_dir is None:
        return [sys.executable, "-m", "compound.service", "--host", host, "--port", port,
                "--port-base", str(port_base)]
    return [sys.executable, "-m", "compound.runtime.truss_process", "--truss",
            str(service.truss_dir), "--host", host, "--port", port]


def _ready_path(service: Service) -> str:
    return "/healthz" if service.truss_dir is None else "/v1/models/model"


@dataclass
class RunningService:
    service: Service
    url: str
    process: subprocess.Popen
    log_tail: collections.deque = field(default_factory=lambda: collections.deque(maxlen=40))
    ready: bool = False

    @property
    def name(self) -> str:
        return self.service.name


class Stack:
    """Services on fixed offsets from one port base; a context manager that stops them all."""

    def __init__(self, host: str = "127.0.0.1", port_base: int = DEFAULT_PORT_BASE,
                 log_sink: Optional[LogSink] = _print_sink, env: Optional[dict] = None,
                 ready_timeout_s: float = 600.0):
        self.host = host
        self.port_base = port_base
        self.log_sink = log_sink
        self.env = {**os.environ, **(env or {})}
        # Local Trusses sign their async webhooks and the chain service verifies them, as
        # on Baseten: one secret per stack unless the caller set one.
        self.env.setdefault("COMPOUND_BASETEN_WEBHOOK_SECRET", secrets.token_hex(16))
        self.ready_timeout_s = ready_timeout_s
        self.running: dict[str, RunningService] = {}

    # -- lifecycle -------------------------------------------------------------------
    def start(self, names: Iterable[str] = ()) -> dict[str, str]:
        """Start the named services (all by default) that are not running; wait until ready.

        Returns name -> base URL of every running service. On any failure every
        service of this stack is stopped and StackError names the culprit.
        """
        return self.start_services(resolve(list(names)))

    def start_services(self, services: Iterable[Service]) -> dict[str, str]:
        """Like start(), for Service objects (e.g. a Truss that is not one of compound's)."""
        services = [s for s in services if s.name not in self.running]
        for service in services:
            port = service.port(self.port_base)
            if not port_is_free(self.host, port):
                self.stop()
                raise StackError(
                    f"port {port} on {self.host} is already in use; it is {service.name}'s port "
                    f"(port base {self.port_base} + {service.port_offset}). Stop whatever holds it "
                    f"or choose another --port-base."
                )
        try:
            for service in services:
                self._spawn(service)
            self._wait_ready([self.running[s.name] for s in services])
        except BaseException:
            self.stop()
            raise
        return self.urls()

    def urls(self) -> dict[str, str]:
        return {name: rs.url for name, rs in self.running.items()}

    def stop(self, grace_s: float = 15.0) -> None:
        for rs in self.running.values():
            if rs.process.poll() is None:
                try:
                    os.killpg(rs.process.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + grace_s
        for rs in self.running.values():
            remaining = max(0.1, deadline - time.monotonic())
            try:
                rs.process.wait(timeout=remaining)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(rs.process.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                rs.process.wait(timeout=5)
        self.running.clear()

    def __enter__(self) -> "Stack":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def failed_services(self) -> list[RunningService]:
        """Services whose process has exited (after having started)."""
        return [rs for rs in self.running.values() if rs.process.poll() is not None]

    # -- internals -------------------------------------------------------------------
    def _spawn(self, service: Service) -> None:
        url = f"http://{self.host}:{service.port(self.port_base)}"
        process = subprocess.Popen(
            _command(service, self.host, self.port_base),
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env=self.env, text=True, bufsize=1,
            # Own process group: stop() signals the whole tree, no orphans.
            start_new_session=True,
        )
        rs = RunningService(service=service, url=url, process=process)
        self.running[service.name] = rs
        threading.Thread(target=self._pump_logs, args=(rs,), daemon=True).start()

    def _pump_logs(self, rs: RunningService) -> None:
        for line in rs.process.stdout:
            line = humanize_log_line(line.rstrip("\n"))
            rs.log_tail.append(line)
            if self.log_sink:
                try:
                    self.log_sink(rs.name, line)
                except Exception:  # keep draining: a full pipe would block the server
                    pass

    def _wait_ready(self, pending: list[RunningService]) -> None:
        deadline = time.monotonic() + self.ready_timeout_s
        with httpx.Client(timeout=2.0) as client:
            while pending:
                for rs in list(pending):
                    if rs.process.poll() is not None:
                        time.sleep(0.3)  # let the log pump drain the last lines
                        tail = "\n".join(f"    {line}" for line in list(rs.log_tail)[-25:])
                        raise StackError(
                            f"{rs.name} exited with code {rs.process.returncode} before it was "
                            f"ready (failed to load?). Last log lines:\n{tail}"
                        )
                    try:
                        response = client.get(rs.url + _ready_path(rs.service))
                        if response.status_code == 200:
                            rs.ready = True
                            pending.remove(rs)
                    except httpx.HTTPError:
                        pass
                if pending and time.monotonic() > deadline:
                    names = ", ".join(rs.name for rs in pending)
                    raise StackError(f"{names} not ready after {self.ready_timeout_s:.0f}s")
                if pending:
                    time.sleep(0.25)
