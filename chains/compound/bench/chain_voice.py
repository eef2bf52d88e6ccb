"""The `voice` figure of `compound bench chain`: end of input audio -> first reply audio byte.

Runs the built-in `voice` chain through the chain service's streaming endpoint on the full
real stack (whisper, llm, tts Trusses + chain service), and times each stage from the
service's `X-Chain-Trace` header. Reference, same run: the same three model calls made by
hand from the client (whisper, then llm, then tts with streaming), and the fully unstreamed
version (tts renders the whole reply before answering).

Audio is requested as raw PCM so the first byte is real audio, not a WAV header.
"""
from __future__ import annotations

import base64
import io
import json
import tempfile
import time
import wave
from pathlib import Path
from typing import Optional

import httpx

from compound.bench import report

QUESTION = "Hello, do you have a table for four people tonight at eight?"
MAX_TOKENS = 32
REPEATS = 5
WARMUP = 1


def question_wav(text: str = QUESTION) -> bytes:
    """The caller's question spoken by the bundled Piper voice, noise off (deterministic)."""
    import numpy as np
    from piper import PiperVoice, SynthesisConfig

    from compound_models.bundled import piper_joe_voice

    voice = PiperVoice.load(str(piper_joe_voice()))
    config = SynthesisConfig(noise_scale=0.0, noise_w_scale=0.0)
    samples = np.concatenate([c.audio_int16_array for c in voice.synthesize(text, syn_config=config)])
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(int(voice.config.sample_rate))
        w.writeframes(samples.tobytes())
    return buf.getvalue()


def _chain_once(http: httpx.Client, chain_url: str, audio_b64: str) -> dict:
    inputs = {"audio": audio_b64, "max_tokens": MAX_TOKENS, "temperature": 0.0, "response_format": "pcm"}
    sent = time.time()  # the request (the whole input audio) leaves the client
    with http.stream("POST", f"{chain_url}/v1/chains/voice/stream", json={"inputs": inputs}) as response:
        if response.status_code != 200:
            response.read()
            raise RuntimeError(f"voice chain: HTTP {response.status_code}: {response.text[:300]}")
        first: Optional[float] = None
        total = 0
        for chunk in response.iter_bytes():
            if chunk and first is None:
                first = time.time()
            total += len(chunk)
        done = time.time()
        trace = json.loads(response.headers.get("x-chain-trace", "[]"))
    stages = {t["name"]: (t["ended_at"] - t["started_at"]) * 1000 for t in trace}
    head_end = max((t["ended_at"] for t in trace), default=sent)
    stages["speak (to first byte)"] = (first - head_end) * 1000
    return {"first_byte_ms": (first - sent) * 1000, "total_ms": (done - sent) * 1000,
            "audio_bytes": total, "stages_ms": stages}


def _by_hand_once(http: httpx.Client, urls: dict, audio_b64: str, stream: bool) -> dict:
    from compound.service.chains.voice import SYSTEM_PROMPT

    sent = time.time()
    heard = http.post(f"{urls['whisper']}/predict", json={"audio": audio_b64})
    heard.raise_for_status()
    text = heard.json()["text"]
    reply = http.post(f"{urls['llm']}/predict", json={
        "messages": [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": text}],
        "max_tokens": MAX_TOKENS, "temperature": 0.0, "stream": False})
    reply.raise_for_status()
    answer = reply.json()["choices"][0]["message"]["content"]
    body = {"input": answer, "response_format": "pcm", "stream": stream}
    first: Optional[float] = None
    with http.stream("POST", f"{urls['tts']}/predict", json=body) as response:
        response.raise_for_status()
        for chunk in response.iter_bytes():
            if chunk and first is None:
                first = time.time()
    return {"first_byte_ms": (first - sent) * 1000, "transcript": text}


def measure(work_dir: Optional[Path] = None, repeats: int = REPEATS) -> dict:
    from compound.runtime.supervisor import Stack, find_free_port_base

    audio = question_wav()
    audio_b64 = base64.b64encode(audio).decode()
    with tempfile.TemporaryDirectory(prefix="compound-bench-voice-") as tmp:
        state = Path(work_dir or tmp)
        env = {"COMPOUND_STATE_DIR": str(state), "COMPOUND_STORE": f"sqlite:///{state / 'voice.db'}"}
        with Stack(port_base=find_free_port_base(), log_sink=lambda n, l: None, env=env,
                   ready_timeout_s=300) as stack:
            started = time.monotonic()
            urls = stack.start(["chain", "whisper", "llm", "tts"])
            startup_s = time.monotonic() - started
            with httpx.Client(timeout=300) as http:
                for _ in range(WARMUP):
                    _chain_once(http, urls["chain"], audio_b64)
                    _by_hand_once(http, urls, audio_b64, stream=True)
                chain_runs, hand_stream, hand_whole = [], [], []
                for _ in range(repeats):  # interleaved: drift hits all three alike
                    chain_runs.append(_chain_once(http, urls["chain"], audio_b64))
                    hand_stream.append(_by_hand_once(http, urls, audio_b64, stream=True))
                    hand_whole.append(_by_hand_once(http, urls, audio_b64, stream=False))
    stage_names = list(chain_runs[0]["stages_ms"])
    return {
        "question": QUESTION,
        "input_audio_s": _wav_seconds(audio),
        "max_tokens": MAX_TOKENS,
        "repeats": repeats,
        "stack_startup_s": startup_s,
        "transcript": hand_stream[0]["transcript"],
        "first_byte_ms": report.summarize([r["first_byte_ms"] for r in chain_runs]),
        "total_ms": report.summarize([r["total_ms"] for r in chain_runs]),
        "stages_p50_ms": {name: report.percentile([r["stages_ms"][name] for r in chain_runs], 50)
                          for name in stage_names},
        "by_hand_first_byte_ms": report.summarize([r["first_byte_ms"] for r in hand_stream]),
        "by_hand_unstreamed_first_byte_ms": report.summarize([r["first_byte_ms"] for r in hand_whole]),
    }


def _wav_seconds(wav_bytes: bytes) -> float:
    with wave.open(io.BytesIO(wav_bytes)) as w:
        return w.getnframes() / w.getframerate()
