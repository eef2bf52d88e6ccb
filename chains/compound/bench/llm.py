"""LLM suite: our LLM Truss (real Truss HTTP server, SSE) vs plain llama.cpp, same GGUF.

Model: the bundled SmolLM2-135M-Instruct Q4_1 GGUF, 2 threads, n_ctx 4096, greedy
(temperature 0), the same sampling settings on both sides.
- reference: `llama_cpp.Llama.create_chat_completion(stream=True)` in this process.
- ours: `POST /v1/chat/completions` with `stream: true` on the LLM Truss served by Truss's
  own server (started here through compound's runtime on a free port).
Measured:
- decode tokens/s of one stream: (content chunks - 1) / (last chunk - first chunk), runs
  of ours and the reference interleaved (target ratio ours/reference >= 0.9);
- time to first token for a ~200-token prompt (prefix differs per run: no KV-cache reuse);
- aggregate tokens/s of ours at 1, 4 and 8 concurrent streams (one llama.cpp context,
  requests queued FIFO, so aggregate stays ~ single-stream decode speed).
The machine's load average is recorded: other processes on the 2 cores skew numbers.
"""
from __future__ import annotations

import asyncio
import json
import os
import statistics
import time
from pathlib import Path

from compound.bench import report

THREADS = 2
N_CTX = 4096
DECODE_TOKENS = 160
DECODE_RUNS = 3
TTFT_RUNS = 3
CONCURRENCY = (1, 4, 8)
CONCURRENT_TOKENS = 32
DECODE_MESSAGES = [{"role": "user", "content": "Count from 1 to 1000, separated by commas."}]
PARAGRAPH = (
    "The committee met on Tuesday to review the quarterly figures for the northern region. "
    "Sales of garden tools rose sharply after a wet spring, while demand for outdoor furniture "
    "fell. The warehouse in Leeds reported delays caused by a broken conveyor belt, which was "
    "repaired within a week. Staff turnover remained low, and two new drivers joined the team. "
)


def _ttft_messages(i: int) -> list:
    # ~200 tokens after the template; a distinct first line defeats prefix caching.
    text = f"Report {i * 7919 % 1000}. " + PARAGRAPH * 2 + "Summarize the report in one sentence."
    return [{"role": "user", "content": text}]


def _sampling():
    from compound_models.llm.llamacpp_backend import SAMPLING_DEFAULTS

    return SAMPLING_DEFAULTS


# --- reference: plain llama.cpp ------------------------------------------------------------

def _plain_stream(llm, messages, max_tokens) -> dict:
    t0 = time.perf_counter()
    stamps = []
    for chunk in llm.create_chat_completion(messages=messages, max_tokens=max_tokens, temperature=0.0,
                                            stream=True, **_sampling()):
        if chunk["choices"][0]["delta"].get("content"):
            stamps.append(time.perf_counter())
    return _timing(t0, stamps)


# --- ours: the Truss over HTTP ---------------------------------------------------------------

async def _http_stream(client, messages, max_tokens) -> dict:
    t0 = time.perf_counter()
    stamps, usage = [], None
    body = {"messages": messages, "max_tokens": max_tokens, "temperature": 0, "stream": True,
            "stream_options": {"include_usage": True}}
    async with client.stream("POST", "/v1/chat/completions", json=body) as response:
        response.raise_for_status()
        async for line in response.aiter_lines():
            if not line.startswith("data:") or line == "data: [DONE]":
                continue
            event = json.loads(line[5:])
            if event.get("usage"):
                usage = event["usage"]
            if event["choices"] and event["choices"][0]["delta"].get("content"):
                stamps.append(time.perf_counter())
    result = _timing(t0, stamps)
    result["completion_tokens"] = usage["completion_tokens"] if usage else None
    return result


def _timing(t0: float, stamps: list) -> dict:
    decode_s = stamps[-1] - stamps[0] if len(stamps) > 1 else float("nan")
    return {
        "chunks": len(stamps),
        "ttft_s": stamps[0] - t0 if stamps else float("nan"),
        "total_s": (stamps[-1] if stamps else time.perf_counter()) - t0,
        "decode_tok_s": (len(stamps) - 1) / decode_s if len(stamps) > 1 else float("nan"),
    }


async def _concurrent(client, n: int) -> dict:
    async def one(i):
        return await _http_stream(client, [{"role": "user", "content": f"Count from {i + 1} to 1000, separated by commas."}],
                                  CONCURRENT_TOKENS)

    t0 = time.perf_counter()
    runs = await asyncio.gather(*(one(i) for i in range(n)))
    wall = time.perf_counter() - t0
    tokens = sum(r["completion_tokens"] or r["chunks"] for r in runs)
    return {"streams": n, "wall_s": round(wall, 3), "tokens": tokens,
            "aggregate_tok_s": round(tokens / wall, 2),
            "ttft_p50_s": round(report.percentile([r["ttft_s"] for r in runs], 50), 3),
            "ttft_max_s": round(max(r["ttft_s"] for r in runs), 3)}


def _start_truss():
    from compound.runtime.supervisor import Stack, find_free_port_base

    logs: list[str] = []
    stack = Stack(port_base=find_free_port_base(start=18600), log_sink=lambda name, line: logs.append(line),
                  env={"COMPOUND_LLM_BACKEND": "llamacpp", "COMPOUND_LLM_THREADS": str(THREADS)},
                  ready_timeout_s=300)
    url = stack.start(["llm"])["llm"]
    return stack, url


def run(out_dir: Path) -> dict:
    import httpx
    import llama_cpp

    from compound_models.bundled import smollm2_gguf

    out_dir.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()
    started = time.monotonic()
    gguf = smollm2_gguf()
    plain = llama_cpp.Llama(model_path=str(gguf), n_ctx=N_CTX, n_threads=THREADS,
                            n_threads_batch=THREADS, verbose=False)
    plain.create_chat_completion(messages=[{"role": "user", "content": "Hi"}], max_tokens=1)  # warm-up
    stack, url = _start_truss()
    try:
        async def ours_all():
            async with httpx.AsyncClient(base_url=url, timeout=300) as client:
                await _http_stream(client, [{"role": "user", "content": "Hi"}], 2)  # warm-up
                decode_ours, decode_ref, ttft_ours, ttft_ref = [], [], [], []
                for _ in range(DECODE_RUNS):  # interleaved: drifting machine load hits both
                    decode_ours.append(await _http_stream(client, DECODE_MESSAGES, DECODE_TOKENS))
                    decode_ref.append(_plain_stream(plain, DECODE_MESSAGES, DECODE_TOKENS))
                for i in range(TTFT_RUNS):
                    ttft_ours.append(await _http_stream(client, _ttft_messages(2 * i), 4))
                    ttft_ref.append(_plain_stream(plain, _ttft_messages(2 * i + 1), 4))
                concurrent = [await _concurrent(client, n) for n in CONCURRENCY]
                return decode_ours, decode_ref, ttft_ours, ttft_ref, concurrent

        decode_ours, decode_ref, ttft_ours, ttft_ref, concurrent = asyncio.run(ours_all())
    finally:
        stack.stop()
    prompt_tokens = _count_prompt(plain, _ttft_messages(0))

    med = statistics.median
    ours_tok_s = med(r["decode_tok_s"] for r in decode_ours)
    ref_tok_s = med(r["decode_tok_s"] for r in decode_ref)
    ours_ttft = med(r["ttft_s"] for r in ttft_ours)
    ref_ttft = med(r["ttft_s"] for r in ttft_ref)
    results = {
        "model": gguf.name,
        "threads": THREADS,
        "load_avg_before": load_before,
        "load_avg_after": os.getloadavg(),
        "decode": {
            "tokens": DECODE_TOKENS,
            "ours_tok_s": round(ours_tok_s, 2),
            "reference_tok_s": round(ref_tok_s, 2),
            "ratio": round(ours_tok_s / ref_tok_s, 3),
            "target_ratio": 0.9,
            "ours_runs": decode_ours,
            "reference_runs": decode_ref,
        },
        "ttft": {
            "prompt_tokens": prompt_tokens,
            "ours_s": round(ours_ttft, 4),
            "reference_s": round(ref_ttft, 4),
            "ratio_reference_over_ours": round(ref_ttft / ours_ttft, 3),
            "ours_runs": ttft_ours,
            "reference_runs": ttft_ref,
        },
        "concurrency": concurrent,
        "suite_wall_s": round(time.monotonic() - started, 1),
    }
    report.write_results(out_dir, "llm", results)
    report.bar_plot(out_dir / "decode_tok_s.png", "Decode tokens/s, 1 stream (SmolLM2-135M Q4_1, 2 threads)",
                    ["ours (Truss HTTP)", "llama.cpp direct"], [ours_tok_s, ref_tok_s], "tokens/s")
    report.bar_plot(out_dir / "ttft.png", f"Time to first token, {prompt_tokens}-token prompt",
                    ["ours (Truss HTTP)", "llama.cpp direct"], [ours_ttft * 1000, ref_ttft * 1000], "ms")
    report.bar_plot(out_dir / "concurrency.png", "Ours: aggregate tokens/s by concurrent streams",
                    [str(c["streams"]) for c in concurrent], [c["aggregate_tok_s"] for c in concurrent],
                    "tokens/s", reference_line=ref_tok_s)
    report.print_table(
        "LLM: ours (Truss HTTP) vs plain llama.cpp",
        ["metric", "ours", "llama.cpp", "ratio ours/ref"],
        [
            ["decode tok/s", ours_tok_s, ref_tok_s, ours_tok_s / ref_tok_s],
            [f"TTFT s ({prompt_tokens}-tok prompt)", ours_ttft, ref_ttft, ours_ttft / ref_ttft],
            *[[f"aggregate tok/s, {c['streams']} streams", c["aggregate_tok_s"], ref_tok_s,
               c["aggregate_tok_s"] / ref_tok_s] for c in concurrent],
        ],
    )
    return results


def _count_prompt(llm, messages) -> int:
    """Prompt tokens after the GGUF's chat template (as the reference evaluates them)."""
    handler_result = llm.create_chat_completion(messages=messages, max_tokens=1, temperature=0.0)
    return handler_result["usage"]["prompt_tokens"]
