"""`compound serve` as a user runs it: ready lines, real Trusses answering, clean stop."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import httpx
import psutil
import pytest
from click.testing import CliRunner

from compound.cli import cli
from compound.commands import serve as serve_command
from compound.commands.serve import chain_service_env
from compound.runtime.supervisor import StackError, find_free_port_base, port_is_free
from compound.services import SERVICES


# -- what `compound serve` sets for its services (no server started) -------------------------
@pytest.mark.parametrize("host, flag, environ, expected", [
    # no flag, nothing set: allowed on a loopback bind only
    ("127.0.0.1", None, {}, "1"),
    ("localhost", None, {}, "1"),
    ("::1", None, {}, "1"),
    ("0.0.0.0", None, {}, "0"),
    ("::", None, {}, "0"),
    ("192.168.1.20", None, {}, "0"),
    ("myhost.example", None, {}, "0"),
    # the user's own setting is kept, either way
    ("127.0.0.1", None, {"COMPOUND_ALLOW_PRIVATE_WEBHOOKS": "0"}, None),
    ("0.0.0.0", None, {"COMPOUND_ALLOW_PRIVATE_WEBHOOKS": "1"}, None),
    # an explicit flag forces it
    ("0.0.0.0", True, {}, "1"),
    ("127.0.0.1", False, {"COMPOUND_ALLOW_PRIVATE_WEBHOOKS": "1"}, "0"),
])
def test_private_webhooks_default_to_loopback_binds_and_keep_the_users_setting(host, flag, environ, expected):
    env = chain_service_env(host, flag, None, environ)
    assert env.get("COMPOUND_ALLOW_PRIVATE_WEBHOOKS") == expected
    assert "COMPOUND_STORE" not in env


def _serve_env(monkeypatch, args: list[str]) -> dict:
    """The env `compound serve ARGS` hands its Stack (which fails at once: nothing starts)."""
    seen: dict = {}

    class FakeStack:
        def __init__(self, **kwargs):
            seen.update(kwargs)

        def start_services(self, services):
            raise StackError("test: not starting anything")

        def stop(self):
            pass

    monkeypatch.setattr(serve_command, "Stack", FakeStack)
    sigterm = signal.getsignal(signal.SIGTERM)
    try:
        result = CliRunner().invoke(cli, ["serve", *args])
    finally:
        signal.signal(signal.SIGTERM, sigterm)  # serve installs its own handler
    assert result.exit_code == 1 and "not starting anything" in result.output, result.output
    return seen["env"]


def test_serve_cli_env_for_private_webhooks_and_store(monkeypatch):
    monkeypatch.delenv("COMPOUND_ALLOW_PRIVATE_WEBHOOKS", raising=False)
    monkeypatch.delenv("COMPOUND_STORE", raising=False)
    assert _serve_env(monkeypatch, ["tts"]) == {"COMPOUND_ALLOW_PRIVATE_WEBHOOKS": "1"}
    assert _serve_env(monkeypatch, ["tts", "--host", "0.0.0.0"]) == {"COMPOUND_ALLOW_PRIVATE_WEBHOOKS": "0"}
    assert _serve_env(monkeypatch, ["tts", "--host", "0.0.0.0", "--allow-private-webhooks"]) == {
        "COMPOUND_ALLOW_PRIVATE_WEBHOOKS": "1"}
    assert _serve_env(monkeypatch, ["tts", "--store", "postgresql://db/compound"]) == {
        "COMPOUND_ALLOW_PRIVATE_WEBHOOKS": "1", "COMPOUND_STORE": "postgresql://db/compound"}
    monkeypatch.setenv("COMPOUND_ALLOW_PRIVATE_WEBHOOKS", "0")  # the user's choice is not overwritten
    assert _serve_env(monkeypatch, ["tts"]) == {}


def test_all_services_ready_on_their_ports(stack):
    for name, url in stack.items():
        path = "/healthz" if name == "chain" else "/v1/models/model"
        assert httpx.get(url + path).status_code == 200, name
    # fixed offsets from one port base
    ports = {name: int(url.rsplit(":", 1)[1]) for name, url in stack.items()}
    base = ports["chain"]
    assert {name: port - base for name, port in ports.items()} == {
        name: s.port_offset for name, s in SERVICES.items()}


def test_serve_cli_prints_ready_lines_and_stops_every_child_on_sigterm(tmp_path):
    base = find_free_port_base(start=19100)
    env = {**os.environ, "COMPOUND_STATE_DIR": str(tmp_path)}
    process = subprocess.Popen(
        [sys.executable, "-m", "compound.cli", "serve", "tts", "whisper", "--port-base", str(base)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    ready = {}
    deadline = time.monotonic() + 240
    try:
        for line in process.stdout:
            if line.startswith("ready"):
                _, name, url = line.split()
                ready[name] = url
            if len(ready) == 2 or time.monotonic() > deadline:
                break
        assert set(ready) == {"tts", "whisper"}, f"ready lines: {ready}"
        assert ready["whisper"] == f"http://127.0.0.1:{base + 2}"
        assert ready["tts"] == f"http://127.0.0.1:{base + 4}"
        for url in ready.values():
            assert httpx.get(url + "/v1/models/model").status_code == 200
        children = psutil.Process(process.pid).children(recursive=True)
        assert len(children) >= 2
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0
        gone, alive = psutil.wait_procs(children, timeout=30)
        assert alive == [], f"orphans left: {alive}"
        assert port_is_free("127.0.0.1", base + 2) and port_is_free("127.0.0.1", base + 4)
    finally:
        if process.poll() is None:
            process.kill()
