"""TTS suite: time to first audio byte, streamed sentence by sentence vs whole text.

Ours: `"stream": true` — the first sentence's audio leaves as soon as it is synthesized.
Reference: the same request without streaming — the first byte leaves after the whole
text is synthesized (what a plain Piper server does). Both go through the real TTS Truss
(Truss's own server, started by the runtime supervisor) in the same run, alternating, on
a three-sentence paragraph, with the bundled en_US-joe-medium voice.

Time to first audio byte (TTFB) is measured from sending the request to receiving the
first body bytes that contain audio (for WAV, past the 44-byte header). In-process rows
isolate the server's overhead and show what cutting a long first sentence at its first
clause break (`first_chunk_max_words`) buys. Real-time factor = synthesis wall time /
audio duration.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

import httpx

from compound.bench import report

PARAGRAPH = ("Thanks for calling, I can help you with that booking today. Your table for four "
             "is confirmed for seven thirty this evening. Is there anything else I can do for you?")
# First sentence long and with a clause break: what the first-clause cut is for.
LONG_FIRST = ("When the morning train finally pulled into the station after a long delay, everyone "
              "on the crowded platform cheered. Then they got on. The doors closed.")
ROUNDS = 6
TARGET_TTFB_MS = 150.0


def _http_ttfb(client: httpx.Client, url: str, body: dict, header_bytes: int) -> tuple[float, float, int]:
    """(ttfb s, total s, body bytes) of one request; TTFB counts only bytes past the header."""
    started = time.perf_counter()
    ttfb = None
    received = 0
    with client.stream("POST", url, json=body) as resp:
        resp.raise_for_status()
        for piece in resp.iter_raw():
            received += len(piece)
            if ttfb is None and received > header_bytes:
                ttfb = time.perf_counter() - started
    return ttfb, time.perf_counter() - started, received


def _in_process(rounds: int) -> dict:
    from compound_models.tts.service import TTSService, TTSSettings

    results = {}
    services = {
        "first-clause-cut": TTSService(TTSSettings()),
        "sentences-only": TTSService(TTSSettings(first_chunk_max_words=0)),
    }
    for svc in services.values():
        svc.load()
        list(svc.prepare({"input": PARAGRAPH, "stream": True}).stream())  # warm-up
    for text_name, text in (("paragraph", PARAGRAPH), ("long-first-sentence", LONG_FIRST)):
        for svc_name, svc in services.items():
            ttfbs, totals, rtfs = [], [], []
            for _ in range(rounds):
                job = svc.prepare({"input": text, "response_format": "pcm", "stream": True})
                started = time.perf_counter()
                chunks = job.stream()
                next(chunks)
                ttfbs.append(time.perf_counter() - started)
                for _ in chunks:
                    pass
                total = time.perf_counter() - started
                totals.append(total)
                rtfs.append(total / (job.progress.samples / job.voice.sample_rate))
            results[f"{text_name}/{svc_name}"] = {
                "units": job.units,
                "ttfb_ms": report.summarize([t * 1000 for t in ttfbs]),
                "total_ms": report.summarize([t * 1000 for t in totals]),
                "rtf": report.summarize(rtfs),
            }
    return results


def run(out_dir: Path) -> dict:
    from compound.runtime.supervisor import Stack, find_free_port_base

    out_dir.mkdir(parents=True, exist_ok=True)
    log = (out_dir / "server.log").open("w", buffering=1)
    stack = Stack(port_base=find_free_port_base(start=19100),
                  log_sink=lambda name, line: log.write(f"[{name}] {line}\n"), ready_timeout_s=300)
    http: dict[str, dict] = {}
    try:
        started = time.perf_counter()
        url = stack.start(["tts"])["tts"] + "/v1/models/model:predict"
        startup_s = time.perf_counter() - started
        variants = {
            # name: (body, header bytes before audio)
            "stream-pcm": ({"input": PARAGRAPH, "response_format": "pcm", "stream": True}, 0),
            "whole-pcm": ({"input": PARAGRAPH, "response_format": "pcm", "stream": False}, 0),
            "stream-wav": ({"input": PARAGRAPH, "response_format": "wav", "stream": True}, 44),
            "stream-mp3": ({"input": PARAGRAPH, "response_format": "mp3", "stream": True}, 0),
        }
        samples: dict[str, dict[str, list]] = {name: {"ttfb": [], "total": []} for name in variants}
        audio_seconds = None
        with httpx.Client(timeout=60) as client:
            for body, header in variants.values():  # warm-up
                _http_ttfb(client, url, body, header)
            for _ in range(ROUNDS):  # alternate so drift hits every variant alike
                for name, (body, header) in variants.items():
                    ttfb, total, received = _http_ttfb(client, url, body, header)
                    samples[name]["ttfb"].append(ttfb * 1000)
                    samples[name]["total"].append(total * 1000)
                    if name == "whole-pcm":
                        audio_seconds = received / 2 / 22050
        for name, s in samples.items():
            http[name] = {"ttfb_ms": report.summarize(s["ttfb"]), "total_ms": report.summarize(s["total"])}
        whole_total = http["whole-pcm"]["total_ms"]["p50"] / 1000
    finally:
        stack.stop()
        log.close()

    in_process = _in_process(ROUNDS)
    stream_p50 = http["stream-pcm"]["ttfb_ms"]["p50"]
    whole_p50 = http["whole-pcm"]["ttfb_ms"]["p50"]
    results = {
        "paragraph": PARAGRAPH,
        "rounds": ROUNDS,
        "load_average": os.getloadavg(),
        "server_startup_s": round(startup_s, 2),
        "http": http,
        "http_audio_seconds": audio_seconds,
        "http_rtf_whole": whole_total / audio_seconds if audio_seconds else None,
        "in_process": in_process,
        "ttfb_ratio_stream_over_whole": stream_p50 / whole_p50,
        "target_ttfb_ms": TARGET_TTFB_MS,
        "stream_meets_target": stream_p50 <= TARGET_TTFB_MS,
    }
    report.write_results(out_dir, "tts", results)

    rows = [(f"http {name}", v["ttfb_ms"]["p50"], v["ttfb_ms"]["p99"], v["total_ms"]["p50"],
             v["ttfb_ms"]["p50"] / whole_p50) for name, v in http.items()]
    rows += [(f"in-process {name}", v["ttfb_ms"]["p50"], v["ttfb_ms"]["p99"], v["total_ms"]["p50"], "")
             for name, v in in_process.items()]
    report.print_table("TTS time to first audio byte (ms); ratio = ours / whole-text reference",
                       ["variant", "ttfb p50", "ttfb p99", "total p50", "ratio vs whole"], rows)
    report.print_table("TTS real-time factor", ["variant", "rtf p50"],
                       [("http whole-pcm", results["http_rtf_whole"])]
                       + [(f"in-process {k}", v["rtf"]["p50"]) for k, v in in_process.items()])
    short = {"paragraph/first-clause-cut": "para cut", "paragraph/sentences-only": "para\nno cut",
             "long-first-sentence/first-clause-cut": "long cut",
             "long-first-sentence/sentences-only": "long\nno cut"}
    labels = ([f"HTTP\n{k.replace('-', chr(10))}" for k in http]
              + [f"local\n{short.get(k, k)}" for k in in_process])
    values = [v["ttfb_ms"]["p50"] for v in http.values()] + [v["ttfb_ms"]["p50"] for v in in_process.values()]
    report.bar_plot(out_dir / "tts_ttfb.png", "TTS time to first audio byte, p50 (target line 150 ms)",
                    labels, values, "ms", reference_line=TARGET_TTFB_MS)
    return results
