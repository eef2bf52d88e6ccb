"""Built-in chains against the real model Trusses (served by Truss's own server, session fixtures).

Assertions are on facts of the bundled booking recording ("...a table for four under the name
Alice at seven pm, one of us is vegetarian."). The bundled CPU json model is small: it copies
names reliably but not numbers, so numbers are asserted only as far as the chain guarantees
them (its business checks held), never as exact values.
"""
from __future__ import annotations

import base64
import io
import re
import wave

import httpx
from click.testing import CliRunner

from compound.samples import booking_wav
from compound.service.chains import get_chain
from compound.service.endpoints import NodeEndpoints
from compound.service.executor import InMemoryJournal, RunContext, run_chain, stream_chain

AUDIO_B64 = base64.b64encode(booking_wav()).decode()


def ctx(urls: dict) -> RunContext:
    return RunContext(endpoints=NodeEndpoints(urls=urls, env={}))


async def run(name: str, inputs: dict, urls: dict):
    c = ctx(urls)
    result = await run_chain(get_chain(name), inputs, InMemoryJournal(c.registry), c)
    assert result.status == "succeeded", result.error
    return result


def words(text: str) -> set[str]:
    return set(re.findall(r"[a-z0-9]+", text.lower()))


def wav_seconds(data: bytes) -> float:
    with wave.open(io.BytesIO(data)) as w:
        return w.getnframes() / w.getframerate()


async def test_voice_chain_real_models(whisper_url, llm_url, tts_url):
    result = await run("voice", {"audio": AUDIO_B64, "temperature": 0.0},
                       {"whisper": whisper_url, "llm": llm_url, "tts": tts_url})
    out = result.outputs
    heard = words(out["transcript"])
    assert {"table", "alice", "vegetarian"} <= heard
    # (not the party size: tiny.en hears "four" as "four", "4" or "400" from run to run)
    assert len(out["reply_text"].split()) >= 2
    audio = base64.b64decode(out["audio_b64"])
    assert out["content_type"].startswith("audio/wav") and wav_seconds(audio) > 0.5
    assert [r.node for r in result.trace] == ["transcribe", "reply", "speakable", "speak"]


async def test_voice_chain_streams_real_tts(whisper_url, llm_url, tts_url):
    urls = {"whisper": whisper_url, "llm": llm_url, "tts": tts_url}
    heads, chunks = [], []
    async for chunk in stream_chain(get_chain("voice"), {"audio": AUDIO_B64, "temperature": 0.0}, ctx(urls),
                                    on_head=heads.append):
        chunks.append(chunk)
    audio = b"".join(chunks)
    assert audio[:4] == b"RIFF" and len(audio) > 20_000
    assert heads[0].steps["speakable"]["text"]


async def test_extract_chain_real_models_from_audio(whisper_url, json_url):
    result = await run("extract", {"audio": AUDIO_B64}, {"whisper": whisper_url, "json": json_url})
    out = result.outputs
    record = out["record"]
    assert "alice" in words(out["transcript"])
    assert set(record) == {"name", "party_size", "time", "vegetarian"}
    assert "alice" in record["name"].lower()
    assert 1 <= record["party_size"] <= 50  # the booking checks held
    assert 0 <= record["vegetarian"] <= record["party_size"]
    assert 1 <= out["rounds"] <= 3


async def test_extract_chain_real_json_custom_schema_and_checks(json_url):
    schema = {"type": "object", "properties": {
        "city": {"type": "string", "description": "the destination city"},
        "nights": {"type": "integer", "description": "number of nights"}},
        "required": ["city", "nights"], "additionalProperties": False}
    checks = [{"field": "nights", "op": ">", "value": 0}, {"field": "city", "op": "nonempty"}]
    result = await run("extract", {"text": "Please book me a hotel in Lisbon for three nights.",
                                   "schema": schema, "checks": checks}, {"json": json_url})
    record = result.outputs["record"]
    assert "lisbon" in record["city"].lower() and record["nights"] > 0


async def test_fanout_chain_real_json(json_url):
    text = ("Bob would like a table for two at eight pm, no vegetarians.\n\n"
            "Carol asks for a table for six at noon, two of them are vegetarian.\n\n"
            "Dan needs a table for three at seven thirty, all vegetarian.")
    result = await run("fanout", {"text": text}, {"json": json_url})
    out = result.outputs
    assert out["parts"] == 3
    names = [r["record"]["name"].lower() for r in out["records"]]
    assert ["bob" in names[0], "carol" in names[1], "dan" in names[2]] == [True, True, True]
    assert all(1 <= r["record"]["party_size"] <= 50 for r in out["records"])
    extract = [r for r in result.trace if r.node == "extract"][0]
    assert extract.attempts >= 3  # one call per part


async def test_real_node_down_fails_the_run_clearly(whisper_url):
    # json deliberately pointed at a port nobody serves; whisper is real
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    chain = get_chain("extract").with_nodes(extract={"retry": get_chain("extract").node("extract").retry.model_copy(
        update={"initial_delay_s": 0.01})})
    c = ctx({"whisper": whisper_url, "json": dead})
    result = await run_chain(chain, {"audio": AUDIO_B64}, InMemoryJournal(c.registry), c)
    assert result.status == "failed" and result.failed_step == "extract"
    assert "node 'extract' failed after 3 attempt(s): connect" in result.error
    assert [r.status for r in result.trace] == ["succeeded", "failed"]


def test_chain_truss_served_by_truss_server(whisper_url, json_url, tmp_path):
    """The chain Truss under Truss's own server (as `truss push` would run it), real models behind."""
    from compound.paths import REPO_ROOT
    from compound.runtime.supervisor import Stack, find_free_port_base
    from compound.services import Service

    env = {"COMPOUND_NODE_URL_JSON": json_url, "COMPOUND_NODE_URL_WHISPER": whisper_url,
           "COMPOUND_STATE_DIR": str(tmp_path)}
    with Stack(port_base=find_free_port_base(span=1), env=env, log_sink=None, ready_timeout_s=180) as stack:
        url = stack.start_services([Service("chain_truss", 0, REPO_ROOT / "chains" / "chain_truss")])["chain_truss"]
        with httpx.Client(timeout=300) as client:
            ok = client.post(f"{url}/v1/models/model:predict",
                             json={"chain": "extract", "input": {"audio": AUDIO_B64}})
            bad = client.post(f"{url}/v1/models/model:predict", json={"chain": "nope", "input": {}})
    assert ok.status_code == 200, ok.text
    assert "alice" in ok.json()["outputs"]["record"]["name"].lower()
    assert [t["name"] for t in ok.json()["trace"]][:2] == ["transcribe", "extract"]
    assert bad.status_code == 404 and "available: extract, fanout, voice" in bad.text


def test_compound_demo_on_the_running_stack(stack, tmp_path):
    from compound.commands.demo import demo

    port_base = int(stack["chain"].rsplit(":", 1)[1])
    out = tmp_path / "reply.wav"
    result = CliRunner().invoke(demo, ["--port-base", str(port_base), "--out", str(out)],
                                env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output + repr(result.exception)
    assert "Using the stack already running" in result.output
    for heading in ("transcript", "structured record", "reply text", "per-node timings", "first audio byte"):
        assert heading in result.output
    assert "alice" in result.output.lower()
    assert wav_seconds(out.read_bytes()) > 0.5
