"""Start the chain service the way `compound serve` does (`python -m compound.service ...`) as a
subprocess, with its store in a tmp dir (or a PostgreSQL database) and the fake chains plugged in."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional

import httpx

from http_fakes import free_port

FAKE_CHAINS = str(Path(__file__).with_name("fake_chains.py"))
WEBHOOK_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
API_KEY = "test-key-123"
BASETEN_SECRET = "baseten-test-secret"

# Fast retry schedule and short leases so fault tests finish in seconds.
FAST_ENV = {
    "COMPOUND_WEBHOOK_SCHEDULE": "0,0.3,0.6,1,1,1,1,1",
    "COMPOUND_WEBHOOK_JITTER": "0.1",
    "COMPOUND_WEBHOOK_TIMEOUT_S": "1",
    "COMPOUND_JOB_LEASE_S": "2",
    "COMPOUND_POLL_S": "0.1",
}


class ServiceProcess:
    def __init__(self, store_url: str, log_path: Path, node_url: str, extra_env: Optional[dict] = None,
                 port: Optional[int] = None):
        self.store_url = store_url
        self.log_path = log_path
        self.port = port or free_port()
        self.env = {**os.environ, **FAST_ENV,
                    "COMPOUND_CHAIN_PLUGINS": FAKE_CHAINS,
                    "COMPOUND_NODE_URL_FAKENODE": node_url,
                    "COMPOUND_WEBHOOK_SECRET": WEBHOOK_SECRET,
                    "COMPOUND_API_KEY": API_KEY,
                    "COMPOUND_BASETEN_WEBHOOK_SECRET": BASETEN_SECRET,
                    **(extra_env or {})}
        self.proc: Optional[subprocess.Popen] = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def client(self, **kw) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=30, **kw)

    def start(self, timeout: float = 30) -> "ServiceProcess":
        return self.launch().wait_ready(timeout)

    def launch(self) -> "ServiceProcess":
        log = open(self.log_path, "ab")
        # --port-base: a free base so model nodes never resolve to a real `compound serve` (8100+).
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "compound.service", "--host", "127.0.0.1", "--port", str(self.port),
             "--port-base", str(free_port()), "--store", self.store_url, "--allow-private-webhooks",
             "--log-level", "info"],
            env=self.env, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        return self

    def wait_ready(self, timeout: float = 30) -> "ServiceProcess":
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"chain service exited {self.proc.returncode}:\n{self.log()}")
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"chain service not healthy in {timeout}s:\n{self.log()}")

    def kill9(self) -> None:
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-6000:]
        except OSError:
            return ""
