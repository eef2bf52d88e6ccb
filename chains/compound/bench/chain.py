"""`compound bench chain`: what the chain layer costs on top of the nodes it calls.

Figures (each next to its reference, measured in the same run):

- hop: one truss node calling the echo Truss, vs calling echo's /predict directly.
  Overhead = chain latency - direct latency, p50/p99 (target <= 2 ms p50). Measured
  in-process (executor only: `run_chain`) and through the HTTP chain service (an extra
  client -> service hop on top of the executor).
- marginal hop (service): a chain of k echo nodes one after another vs the one-node chain;
  (T_k - T_1) / (k - 1) - direct latency is what each further node hop costs, without the
  fixed client -> service entry that the `hop` figure above includes.
- fanout: k independent echo nodes that each sleep `SLEEP_S`, vs the slowest single node
  (target <= 1.2x) and vs the same nodes chained one after another (sequential).
- throughput: a no-op chain (one code node), runs/s with the 2 cores this box has,
  in-process and through the service.
- voice: end of input audio -> first reply audio byte through the built-in `voice` chain
  on the full real stack, each stage timed, vs the same three model calls made by hand
  from the client one after another (no streaming).

Echo is a real Truss (tests/trusses/echo) served by Truss's own server; a copy with a
higher `predict_concurrency` is used so k concurrent sleeps do not queue behind each other.

This module doubles as a chain plugin: `COMPOUND_CHAIN_PLUGINS=compound.bench.chain` makes
the chain service serve the bench chains in `CHAINS` (node `echo` resolves through
`COMPOUND_NODE_URL_ECHO`).
"""
from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Optional

import httpx
import yaml
from pydantic import BaseModel, Field

from compound.bench import report
from compound.paths import MODELS_DIR, REPO_ROOT
from compound.service.graph import NO_RETRY, Chain, Node

ECHO_TRUSS = REPO_ROOT / "tests" / "trusses" / "echo"
SLEEP_S = 0.2  # fan-out node duration: long enough that scheduling noise is small
FANOUT_KS = (2, 4, 8)
HOP_N = 300  # requests per hop variant (interleaved with the direct calls)
WARMUP_N = 20
THROUGHPUT_S = 5.0  # seconds of load per throughput variant
THROUGHPUT_CONCURRENCY = 16


# --- bench chains ---------------------------------------------------------------------------
class BenchInput(BaseModel):
    payload: dict = Field(default_factory=dict, description="echoed back by every echo node")
    sleep_s: float = Field(0.0, ge=0, le=5, description="how long each echo node sleeps")


def _echo_node(name: str, depends_on: Optional[list[str]] = None) -> Node:
    return Node.truss(
        name, "echo",
        request=lambda s, name=name: {"node": name, "sleep_s": s.input.sleep_s, **s.input.payload},
        parse=lambda reply, s: reply.data,
        depends_on=depends_on or [], retry=NO_RETRY, timeout_s=30,
    )


def _steps_output(steps: dict, _input: BaseModel) -> dict:
    return {"steps": steps}


def hop_chain() -> Chain:
    return Chain("bench-hop", BenchInput, [_echo_node("echo")], _steps_output,
                 description="bench: one echo node (per-hop overhead)")


def fanout_chain(k: int) -> Chain:
    nodes = [_echo_node(f"e{i}") for i in range(k)]
    return Chain(f"bench-fanout-{k}", BenchInput, nodes, _steps_output,
                 description=f"bench: {k} independent echo nodes")


def sequential_chain(k: int) -> Chain:
    nodes = [_echo_node(f"e{i}", [f"e{i - 1}"] if i else []) for i in range(k)]
    return Chain(f"bench-seq-{k}", BenchInput, nodes, _steps_output,
                 description=f"bench: {k} echo nodes one after another")


def noop_chain() -> Chain:
    return Chain("bench-noop", BenchInput, [Node.code("noop", lambda s: {})], _steps_output,
                 description="bench: one no-op code node (chain machinery only)")


CHAINS: dict[str, Chain] = {c.name: c for c in [
    hop_chain(), noop_chain(),
    *(fanout_chain(k) for k in FANOUT_KS), *(sequential_chain(k) for k in FANOUT_KS),
]}


# --- local services ---------------------------------------------------------------------------
def _concurrent_echo_copy(work: Path, concurrency: int = 32) -> Path:
    """tests/trusses/echo with predict_concurrency raised (the original serializes calls)."""
    target = work / "echo"
    shutil.copytree(ECHO_TRUSS, target, ignore=shutil.ignore_patterns("__pycache__"))
    config = yaml.safe_load((target / "config.yaml").read_text())
    config["runtime"]["predict_concurrency"] = concurrency
    config["external_package_dirs"] = [str(MODELS_DIR / "common")]
    (target / "config.yaml").write_text(yaml.safe_dump(config))
    return target


def _quiet_sink(name: str, line: str) -> None:
    pass


# --- measurement helpers --------------------------------------------------------------------
def _ms(values: list[float]) -> list[float]:
    return [v * 1000 for v in values]


async def _timed(coro) -> tuple[float, Any]:
    started = time.perf_counter()
    result = await coro
    return time.perf_counter() - started, result


async def _direct(http: httpx.AsyncClient, echo_url: str, body: dict) -> dict:
    response = await http.post(echo_url + "/predict", json=body)
    response.raise_for_status()
    return response.json()


async def _in_process(chain: Chain, inputs: dict, ctx) -> dict:
    from compound.service.executor import InMemoryJournal, run_chain

    result = await run_chain(chain, inputs, InMemoryJournal(ctx.registry), ctx)
    if result.status != "succeeded":
        raise RuntimeError(f"bench chain {chain.name} {result.status}: {result.error}")
    return result.outputs


class ServiceClient:
    """Runs a chain synchronously through the chain service's HTTP API."""

    def __init__(self, http: httpx.AsyncClient, base_url: str):
        self.http, self.base_url = http, base_url

    async def run(self, chain: str, inputs: dict) -> dict:
        response = await self.http.post(f"{self.base_url}/v1/chains/{chain}/run", json={"inputs": inputs})
        if response.status_code != 200:
            raise RuntimeError(f"chain service: HTTP {response.status_code}: {response.text[:300]}")
        body = response.json()
        if body.get("status", "succeeded") != "succeeded":
            raise RuntimeError(f"chain service run {chain} {body.get('status')}: {body.get('error')}")
        return body


def _overhead(chain_s: list[float], direct_s: list[float]) -> dict:
    """Per-pair differences (interleaved samples), summarized; plus p50/p99 of each side."""
    diffs = [c - d for c, d in zip(chain_s, direct_s)]
    chain, direct = report.summarize(_ms(chain_s)), report.summarize(_ms(direct_s))
    return {
        "direct_ms": direct,
        "chain_ms": chain,
        "overhead_p50_ms": chain["p50"] - direct["p50"],
        "overhead_p99_ms": chain["p99"] - direct["p99"],
        "paired_overhead_ms": report.summarize(_ms(diffs)),
    }


async def _hop(http, echo_url: str, run_chain_fn, n: int = HOP_N) -> dict:
    body = {"payload": {"x": 1}}
    direct_body = {"node": "echo", "sleep_s": 0.0, "x": 1}
    for _ in range(WARMUP_N):
        await _direct(http, echo_url, direct_body)
        await run_chain_fn("bench-hop", body)
    direct_s, chain_s = [], []
    for _ in range(n):  # interleaved, so drift (other load on the box) hits both sides alike
        direct_s.append((await _timed(_direct(http, echo_url, direct_body)))[0])
        chain_s.append((await _timed(run_chain_fn("bench-hop", body)))[0])
    return _overhead(chain_s, direct_s)


async def _marginal_hop(http, echo_url: str, run_chain_fn, k: int = max(FANOUT_KS), n: int = 60) -> dict:
    body = {"payload": {"x": 1}}
    direct_body = {"node": "echo", "sleep_s": 0.0, "x": 1}
    for _ in range(WARMUP_N // 2):
        await run_chain_fn(f"bench-seq-{k}", body)
    direct_s, one_s, many_s = [], [], []
    for _ in range(n):  # interleaved, like _hop
        direct_s.append((await _timed(_direct(http, echo_url, direct_body)))[0])
        one_s.append((await _timed(run_chain_fn("bench-hop", body)))[0])
        many_s.append((await _timed(run_chain_fn(f"bench-seq-{k}", body)))[0])
    direct, one, many = (report.summarize(_ms(v)) for v in (direct_s, one_s, many_s))
    per_hop = (many["p50"] - one["p50"]) / (k - 1)
    return {"k": k, "direct_ms": direct, "one_node_ms": one, "k_nodes_ms": many,
            "per_hop_ms_p50": per_hop, "overhead_per_hop_ms_p50": per_hop - direct["p50"],
            "entry_ms_p50": one["p50"] - direct["p50"]}


async def _fanout(http, echo_url: str, run_chain_fn, repeats: int = 5) -> dict:
    body = {"payload": {}, "sleep_s": SLEEP_S}
    slowest = [(await _timed(_direct(http, echo_url, {"sleep_s": SLEEP_S})))[0] for _ in range(repeats)]
    slowest_p50 = report.percentile(slowest, 50)
    out: dict = {"sleep_s": SLEEP_S, "single_node_ms": report.summarize(_ms(slowest)), "k": {}}
    for k in FANOUT_KS:
        fan = [(await _timed(run_chain_fn(f"bench-fanout-{k}", body)))[0] for _ in range(repeats)]
        seq = [(await _timed(run_chain_fn(f"bench-seq-{k}", body)))[0] for _ in range(2)]
        out["k"][str(k)] = {
            "fanout_ms": report.summarize(_ms(fan)),
            "sequential_ms": report.summarize(_ms(seq)),
            "fanout_over_slowest": report.percentile(fan, 50) / slowest_p50,
            "sequential_over_slowest": report.percentile(seq, 50) / slowest_p50,
        }
    return out


async def _throughput(run_chain_fn, seconds: float = THROUGHPUT_S,
                      concurrency: int = THROUGHPUT_CONCURRENCY) -> dict:
    body = {"payload": {}}
    latencies: list[float] = []
    failures = 0
    deadline = time.perf_counter() + seconds

    async def worker():
        nonlocal failures
        while time.perf_counter() < deadline:
            try:
                latencies.append((await _timed(run_chain_fn("bench-noop", body)))[0])
            except Exception:
                failures += 1

    for _ in range(10):
        await run_chain_fn("bench-noop", body)
    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    return {"concurrency": concurrency, "seconds": elapsed, "runs": len(latencies),
            "failures": failures, "runs_per_s": len(latencies) / elapsed,
            "latency_ms": report.summarize(_ms(latencies))}


# --- the suite -----------------------------------------------------------------------------
async def _echo_benches(echo_url: str, service_url: Optional[str]) -> dict:
    from compound.service.callbacks import CallbackRegistry
    from compound.service.endpoints import NodeEndpoints
    from compound.service.executor import RunContext
    from compound.service.clients import new_http_client

    results: dict = {"in_process": {}, "service": {}}
    async with new_http_client() as http:
        ctx = RunContext(endpoints=NodeEndpoints.from_env(urls={"echo": echo_url}),
                         registry=CallbackRegistry(), http=http)

        async def local(name: str, inputs: dict) -> dict:
            return await _in_process(CHAINS[name], inputs, ctx)

        results["in_process"]["hop"] = await _hop(http, echo_url, local)
        results["in_process"]["fanout"] = await _fanout(http, echo_url, local)
        results["in_process"]["throughput"] = await _throughput(local)
        if service_url:
            service = ServiceClient(http, service_url)
            results["service"]["hop"] = await _hop(http, echo_url, service.run, n=HOP_N // 2)
            results["service"]["marginal_hop"] = await _marginal_hop(http, echo_url, service.run)
            results["service"]["fanout"] = await _fanout(http, echo_url, service.run, repeats=3)
            results["service"]["throughput"] = await _throughput(service.run)
    return results


def _start_echo_and_service(stack_env: dict, work: Path):
    """Echo (concurrent copy) and a chain service that serves the bench chains."""
    from compound.runtime.supervisor import Stack, find_free_port_base
    from compound.services import Service

    echo_stack = Stack(port_base=find_free_port_base(), log_sink=_quiet_sink, ready_timeout_s=120,
                       env={"COMPOUND_STATE_DIR": str(work / "state")})
    echo_url = echo_stack.start_services([Service("echo", 0, _concurrent_echo_copy(work))])["echo"]
    service_stack = Stack(port_base=find_free_port_base(start=echo_stack.port_base + 10),
                          log_sink=_quiet_sink, ready_timeout_s=120, env={
                              **stack_env,
                              "COMPOUND_CHAIN_PLUGINS": "compound.bench.chain",
                              "COMPOUND_NODE_URL_ECHO": echo_url,
                              "COMPOUND_STORE": f"sqlite:///{work / 'bench-chain.db'}",
                              "COMPOUND_STATE_DIR": str(work / "state"),
                          })
    return echo_stack, echo_url, service_stack


def run(out_dir: Path) -> dict:
    out_dir.mkdir(parents=True, exist_ok=True)
    results: dict = {"inputs": {"sleep_s": SLEEP_S, "fanout_ks": list(FANOUT_KS), "hop_n": HOP_N,
                                "throughput_s": THROUGHPUT_S,
                                "throughput_concurrency": THROUGHPUT_CONCURRENCY},
                     "notes": [],
                     # other work on the box skews latency figures; recorded so readers can tell
                     "load_avg_1m_at_start": os.getloadavg()[0]}
    with tempfile.TemporaryDirectory(prefix="compound-bench-chain-") as tmp:
        work = Path(tmp)
        echo_stack, echo_url, service_stack = _start_echo_and_service({}, work)
        try:
            service_url = None
            try:
                service_url = service_stack.start(["chain"])["chain"]
            except Exception as exc:  # still report the executor figures
                results["notes"].append(f"chain service not measured: {exc}")
            results.update(asyncio.run(_echo_benches(echo_url, service_url)))
        finally:
            service_stack.stop()
            echo_stack.stop()
    try:
        from compound.bench import chain_voice

        results["voice"] = chain_voice.measure()
    except Exception as exc:
        results["voice"] = {"error": f"{type(exc).__name__}: {exc}"}
        results["notes"].append(f"voice not measured: {exc}")
    results["load_avg_1m_at_end"] = os.getloadavg()[0]
    _report(out_dir, results)
    return results


WHERE = {"in_process": "executor", "service": "service"}


def _report(out_dir: Path, results: dict) -> None:
    rows = []
    labels, overheads = [], []
    for where in ("in_process", "service"):
        hop = results.get(where, {}).get("hop")
        if hop:
            rows.append((f"hop overhead, {WHERE[where]}", hop["overhead_p50_ms"], hop["overhead_p99_ms"],
                         "ms", "<=2 p50",
                         f"p50/p99 chain {hop['chain_ms']['p50']:.1f}/{hop['chain_ms']['p99']:.1f}, "
                         f"direct {hop['direct_ms']['p50']:.1f}/{hop['direct_ms']['p99']:.1f}"))
            labels.append(f"{WHERE[where]}\n(entry + 1 hop)" if where == "service" else WHERE[where])
            overheads.append(hop["overhead_p50_ms"])
    marginal = results.get("service", {}).get("marginal_hop")
    if marginal:
        rows.append(("hop overhead, service, each further hop", marginal["overhead_per_hop_ms_p50"], "",
                     "ms", "<=2 p50",
                     f"{marginal['k']} nodes {marginal['k_nodes_ms']['p50']:.1f} vs 1 node "
                     f"{marginal['one_node_ms']['p50']:.1f}, direct {marginal['direct_ms']['p50']:.1f}"))
        labels.append("service\n(each further hop)")
        overheads.append(marginal["overhead_per_hop_ms_p50"])
    fan_plots: dict[str, tuple[list, list]] = {}
    for where in ("in_process", "service"):
        fan = results.get(where, {}).get("fanout")
        if not fan:
            continue
        labels_w, values_w = fan_plots.setdefault(WHERE[where], ([], []))
        for k, figures in fan["k"].items():
            rows.append((f"fan-out k={k}, {WHERE[where]}", figures["fanout_over_slowest"], "",
                         "x slowest", "<=1.2x", f"sequential {figures['sequential_over_slowest']:.2f}x"))
            labels_w += [f"k={k}\nfan-out", f"k={k}\nsequential"]
            values_w += [figures["fanout_over_slowest"], figures["sequential_over_slowest"]]
    for where in ("in_process", "service"):
        tp = results.get(where, {}).get("throughput")
        if tp:
            rows.append((f"no-op chain, {WHERE[where]}", tp["runs_per_s"], "", "runs/s",
                         f"{tp['failures']} failed", f"c={tp['concurrency']}, p50 {tp['latency_ms']['p50']:.1f} ms"))
    voice = results.get("voice") or {}
    if "first_byte_ms" in voice:
        rows.append(("voice: audio end -> 1st audio byte", voice["first_byte_ms"]["p50"],
                     voice["first_byte_ms"]["p99"], "ms",
                     f"by hand {voice['by_hand_first_byte_ms']['p50']:.0f} / "
                     f"unstreamed {voice['by_hand_unstreamed_first_byte_ms']['p50']:.0f}",
                     "stages p50 ms: " + ", ".join(f"{k} {v:.0f}" for k, v in voice["stages_p50_ms"].items())))
    report.write_results(out_dir, "chain", results)
    if overheads:
        report.bar_plot(out_dir / "hop_overhead.png", "Chain per-hop overhead vs direct call (p50)",
                        labels, overheads, "ms", reference_line=2.0)
    for where, (fan_labels, fan_values) in fan_plots.items():
        report.bar_plot(out_dir / f"fanout_{where}.png",
                        f"{where}: k echo nodes sleeping {SLEEP_S}s, time / slowest node",
                        fan_labels, fan_values, "x slowest node", reference_line=1.2)
    if "first_byte_ms" in voice:
        stages = voice["stages_p50_ms"]
        report.bar_plot(out_dir / "voice_stages.png", "voice chain: stage durations (p50)",
                        list(stages), list(stages.values()), "ms")
        report.bar_plot(out_dir / "voice_first_byte.png", "end of input audio -> first reply audio byte (p50)",
                        ["voice chain\n(service, streamed)", "by hand\n(3 calls, tts streamed)",
                         "by hand\n(3 calls, unstreamed)"],
                        [voice["first_byte_ms"]["p50"], voice["by_hand_first_byte_ms"]["p50"],
                         voice["by_hand_unstreamed_first_byte_ms"]["p50"]], "ms")
    report.print_table("chain", ["figure", "p50/value", "p99", "unit", "target/ref", "detail"],
                       rows)
