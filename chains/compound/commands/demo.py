"""`compound demo`: the README's main job, end to end on this machine.

Uses the stack already serving on --port-base (probes the chain service first) or brings one
up (all four model Trusses + the chain service) and stops it afterwards. Then, on the bundled
booking recording (or --audio), runs `voice` (transcript -> reply -> spoken reply, also streamed
to measure time to first audio) and `extract` (the booking as a checked record), printing the
transcript, record, reply text, where the reply audio was written and per-node timings.
"""
from __future__ import annotations

import base64
import contextlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Optional

import click
import httpx

from compound.services import DEFAULT_PORT_BASE, SERVICES


def _chain_up(client: httpx.Client, url: str) -> bool:
    try:
        return client.get(f"{url}/healthz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


@contextlib.contextmanager
def _stack(host: str, port_base: int, console, log_path: Path):
    """Yield the chain service URL: a running one, or a stack started (and stopped) here."""
    url = f"http://{host}:{SERVICES['chain'].port(port_base)}"
    with httpx.Client() as client:
        if _chain_up(client, url):
            console.print(f"Using the stack already running at port base {port_base} ({url}).")
            yield url
            return
    from compound.runtime.supervisor import Stack

    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("a", buffering=1) as log:
        stack = Stack(host=host, port_base=port_base,
                      log_sink=lambda name, line: log.write(f"[{name}] {line}\n"))
        with console.status(f"Starting llm, whisper, json, tts and the chain service on ports "
                            f"{port_base}-{port_base + 4} (log: {log_path})..."):
            started = time.monotonic()
            urls = stack.start([])
        console.print(f"Stack up in {time.monotonic() - started:.1f} s.")
        try:
            yield urls["chain"]
        finally:
            stack.stop()


def _post(client: httpx.Client, url: str, body: dict) -> dict:
    response = client.post(url, json=body)
    try:
        data = response.json()
    except ValueError:
        raise click.ClickException(f"{url} answered HTTP {response.status_code}: {response.text[:300]}")
    if response.status_code != 200 or data.get("status") != "succeeded":
        error = data.get("error") or (data.get("detail") or {}).get("error") or data
        raise click.ClickException(f"{url} failed (HTTP {response.status_code}): {error}")
    return data


def _time_to_first_audio(client: httpx.Client, url: str, body: dict) -> tuple[Optional[float], float, int]:
    started = time.perf_counter()
    first = None
    size = 0
    with client.stream("POST", url, json=body) as response:
        if response.status_code != 200:
            response.read()
            raise click.ClickException(f"{url} answered HTTP {response.status_code}: {response.text[:300]}")
        for chunk in response.iter_bytes():
            if chunk and first is None:
                first = time.perf_counter() - started
            size += len(chunk)
    return first, time.perf_counter() - started, size


def _timings_table(title: str, trace: list[dict]):
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    for column, justify in (("node", "left"), ("status", "left"), ("attempts", "right"),
                            ("round", "right"), ("seconds", "right")):
        table.add_column(column, justify=justify)
    for step in trace:
        seconds = max(0.0, (step.get("ended_at") or 0) - (step.get("started_at") or 0))
        table.add_row(step.get("node") or step["name"], step["status"], str(step.get("attempts", "")),
                      str(step.get("round", 1)), f"{seconds:.2f}")
    return table


@click.command()
@click.option("--port-base", type=int, default=DEFAULT_PORT_BASE, show_default=True,
              help="Ports of the stack: chain service at this port, models at +1..+4.")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--audio", "audio_path", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="A recording to use instead of the bundled booking sample.")
@click.option("--out", "out_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Where to write the reply audio [default: <state dir>/demo/reply.wav].")
def demo(port_base: int, host: str, audio_path: Optional[Path], out_path: Optional[Path]) -> None:
    """Bring up the local stack and run the voice and extract chains end to end."""
    from rich.console import Console
    from rich.panel import Panel

    from compound.paths import state_dir
    from compound.samples import BOOKING_SENTENCE, BOOKING_WAV

    console = Console()
    audio_path = audio_path or BOOKING_WAV
    out_path = out_path or state_dir() / "demo" / "reply.wav"
    audio_b64 = base64.b64encode(audio_path.read_bytes()).decode()
    headers = {}
    if os.environ.get("COMPOUND_API_KEY"):
        headers["Authorization"] = f"Bearer {os.environ['COMPOUND_API_KEY']}"

    console.print(f"Recording: {audio_path}" + (f'  ("{BOOKING_SENTENCE}")' if audio_path == BOOKING_WAV else ""))
    with _stack(host, port_base, console, state_dir() / "demo" / "stack.log") as chain_url, \
            httpx.Client(timeout=600, headers=headers) as client:
        # temperature 0: the streamed reply below says the same words as the printed one
        voice_input = {"audio": audio_b64, "temperature": 0.0}
        with console.status("voice: whisper -> llm -> tts ..."):
            voice = _post(client, f"{chain_url}/v1/chains/voice/run", {"inputs": voice_input})
        outputs = voice["outputs"]
        out_path.parent.mkdir(parents=True, exist_ok=True)
        out_path.write_bytes(base64.b64decode(outputs["audio_b64"]))
        with console.status("voice (streamed): time to first audio byte ..."):
            first_s, total_s, streamed = _time_to_first_audio(
                client, f"{chain_url}/v1/chains/voice/stream", {"inputs": voice_input})
        with console.status("extract: whisper -> json -> checks ..."):
            extract = _post(client, f"{chain_url}/v1/chains/extract/run", {"inputs": {"audio": audio_b64}})

    console.print(Panel(outputs["transcript"] or "(nothing heard)", title="transcript", title_align="left"))
    console.print(Panel(json.dumps(extract["outputs"]["record"], indent=2), title_align="left",
                        title=f"structured record (checks passed, {extract['outputs']['rounds']} round(s))"))
    console.print(Panel(outputs["reply_text"], title="reply text", title_align="left"))
    console.print(f"Reply audio: {out_path} ({out_path.stat().st_size} bytes, {outputs['content_type']})")
    if first_s is not None:
        console.print(f"Streamed reply: first audio byte after {first_s:.2f} s, all {streamed} bytes "
                      f"after {total_s:.2f} s")
    console.print(_timings_table(f"voice per-node timings ({voice.get('duration_s', 0):.2f} s total)",
                                 voice["trace"]))
    console.print(_timings_table(f"extract per-node timings ({extract.get('duration_s', 0):.2f} s total)",
                                 extract["trace"]))
    sys.stdout.flush()
