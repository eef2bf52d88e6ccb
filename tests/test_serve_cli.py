"""`compound serve` as a user runs it: ready lines, real Trusses answering, clean stop."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import httpx
import psutil

from compound.runtime.supervisor import find_free_port_base, port_is_free
from compound.services import SERVICES


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
