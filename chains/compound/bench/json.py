"""`compound bench json`: constrained decoding on the bundled SmolLM2 (llama.cpp, CPU).

Measures, in one run on one loaded model:
- decode tokens/s constrained (the product path, `JsonEngine.generate`) vs unconstrained
  (same prompts, same token counts, paired; llama.cpp's prefix cache makes repeated prompts
  cost ~1 token of prefill, so wall time per completion token is the decode rate) → ratio,
  target >= 0.95; for llguidance also token-by-token masking (Outlines' logits processor in
  llama.cpp's loop, no fast-forward) so the gain of fast-forward is visible;
- cold compile p50/p99 over the shared schema set (compound_models/jsongen/schema_set.json)
  per backend (llguidance, outlines_core; xgrammar if importable — Outlines 1.3 has no
  llama.cpp support for it) and warm cache lookup (hash + LRU hit);
- validity rate over the set (parses + validates, or counted as truncated/failed) per backend.
"""
from __future__ import annotations

import importlib.util
import statistics
import time
from pathlib import Path

from compound.bench import report

MAX_TOKENS = 160

SPEED_SCHEMAS = ("string_lengths", "array_of_objects", "deep_nested", "nested_address", "booking")
SPEED_ROUNDS = 3
WARM_LOOKUPS = 2000


def _engine(backend: str, llama):
    from compound_models.jsongen.engine import JsonEngine
    from compound_models.jsongen.settings import Settings

    engine = JsonEngine(Settings(backend=backend, n_threads=2, compile_timeout_s=60), llama=llama)
    engine.load()
    return engine


def _cold_compiles(engine, schema_set) -> tuple[list[float], dict]:
    """Compile every schema once with the backend's compiler (no cache): cold compile ms."""
    times, failures = [], {}
    for entry in schema_set:
        started = time.perf_counter()
        try:
            engine.compiler.compile(entry["schema"])
        except Exception as exc:  # the bench records what a backend cannot compile
            failures[entry["name"]] = f"{type(exc).__name__}: {exc}"[:200]
            continue
        times.append((time.perf_counter() - started) * 1e3)
    return times, failures


def _warm_lookup_us(engine, schema) -> list[float]:
    engine.lookup(schema)  # make sure it is cached
    out = []
    for _ in range(WARM_LOOKUPS):
        started = time.perf_counter()
        found, _ = engine.lookup(schema)
        out.append((time.perf_counter() - started) * 1e6)
        assert found.hit
    return out


def _validity(engine, schema_set) -> dict:
    from compound_models.errors import InputError
    from compound_models.jsongen.engine import JsonRequest

    counts = {"valid": 0, "truncated": 0, "failed": 0, "rejected": 0}
    details = {}
    for entry in schema_set:
        request = JsonRequest(schema=entry["schema"], messages=[{"role": "user", "content": entry["prompt"]}],
                              max_tokens=MAX_TOKENS, temperature=0.0)
        try:
            result = engine.generate(request)
            counts["valid"] += 1
            details[entry["name"]] = {"status": "valid", "tokens": result.usage["completion_tokens"],
                                      "output": result.text[:160]}
        except InputError as exc:
            kind = "truncated" if "truncated" in exc.message else (
                "rejected" if exc.status_code == 400 else "failed")
            counts[kind] += 1
            details[entry["name"]] = {"status": kind, "error": exc.message[:200]}
    attempted = len(schema_set) - counts["rejected"]
    counts["validity_rate"] = counts["valid"] / attempted if attempted else float("nan")
    counts["invalid_bodies_returned"] = 0  # by construction every returned body passed jsonschema
    return {"counts": counts, "details": details}


def _timed(fn) -> tuple[int, int, float]:
    """(completion tokens, forced tokens, seconds) of one generation."""
    started = time.perf_counter()
    usage = fn()
    return usage["completion_tokens"], usage.get("forced_tokens", 0), time.perf_counter() - started


def _decode_modes(engine, llama, entry: dict, lengths: dict) -> dict:
    """The generation calls compared, each returning its usage dict.

    - constrained: the product path, `engine.generate` (llguidance: the fast-forward loop of
      jsongen/decode.py; outlines_core: llama.cpp's loop with Outlines' logits processor);
    - token_by_token (llguidance only): the same guide as an Outlines logits processor in
      llama.cpp's own loop, i.e. masking one token at a time, no fast-forward;
    - unconstrained: llama.cpp's loop, no processor, max_tokens = the constrained length.
    """
    import llama_cpp

    from compound_models.jsongen.engine import JsonRequest

    messages = [{"role": "user", "content": entry["prompt"]}]
    found, _ = engine.lookup(entry["schema"])
    modes = {
        "constrained": lambda: engine.generate(JsonRequest(
            schema=entry["schema"], messages=messages, max_tokens=MAX_TOKENS)).usage,
        "unconstrained": lambda: llama.create_chat_completion(
            messages, temperature=0.0, max_tokens=lengths[entry["name"]])["usage"],
    }
    if engine.compiler.name == "llguidance":
        modes["token_by_token"] = lambda: llama.create_chat_completion(
            messages, temperature=0.0, max_tokens=MAX_TOKENS,
            logits_processor=llama_cpp.LogitsProcessorList([found.value.new_processor()]))["usage"]
    return modes


def _decode_rates(engine, schema_set) -> dict:
    """Completion tokens / wall seconds per mode, same prompt, same run.

    The unconstrained run gets max_tokens = the constrained run's token count, so both pay the
    same per-call overhead over the same number of tokens. Before every timed call the prompt
    is put in llama.cpp's prefix cache (one 1-token completion), so wall time per completion
    token is the decode rate. Modes run back to back with their order rotating per round (a
    shared CPU drifts); the headline is the median of the per-prompt ratios.
    """
    by_name = {e["name"]: e for e in schema_set}
    llama = engine.llama
    lengths = {}
    for name in SPEED_SCHEMAS:  # warm-up: learn each constrained length (greedy → same every time)
        lengths[name], _, _ = _timed(_decode_modes(engine, llama, by_name[name], {name: 1})["constrained"])
    totals: dict[str, list] = {}
    ratios: dict[str, list] = {}
    for round_index in range(SPEED_ROUNDS):
        for name in SPEED_SCHEMAS:
            modes = _decode_modes(engine, llama, by_name[name], lengths)
            order = list(modes)
            order = order[round_index % len(order):] + order[:round_index % len(order)]
            rate = {}
            for mode in order:
                llama.create_chat_completion([{"role": "user", "content": by_name[name]["prompt"]}],
                                             max_tokens=1)
                n, forced, elapsed = _timed(modes[mode])
                rate[mode] = n / elapsed
                total = totals.setdefault(mode, [0, 0, 0.0])
                total[0] += n
                total[1] += forced
                total[2] += elapsed
            for mode in rate:
                if mode != "unconstrained":
                    ratios.setdefault(mode, []).append(rate[mode] / rate["unconstrained"])
    rates = {m: v[0] / v[2] for m, v in totals.items()}
    return {
        "tokens_per_s": rates,
        "tokens": {m: v[0] for m, v in totals.items()},
        "forced_tokens": {m: v[1] for m, v in totals.items()},
        "constrained_lengths": lengths,
        "ratio_aggregate": rates["constrained"] / rates["unconstrained"],
        "pair_ratios": ratios["constrained"],
        "ratio": statistics.median(ratios["constrained"]),
        "ratio_by_mode": {m: statistics.median(r) for m, r in ratios.items()},
        "target_ratio": 0.95,
    }


def run(out_dir: Path) -> dict:
    import llama_cpp

    from compound_models.bundled import smollm2_gguf
    from compound_models.jsongen.schema_set import load_schema_set

    schema_set = load_schema_set()
    llama = llama_cpp.Llama(model_path=str(smollm2_gguf()), n_ctx=2048, n_threads=2, verbose=False)
    backends = {}
    for backend in ("llguidance", "outlines_core"):
        engine = _engine(backend, llama)
        cold, failures = _cold_compiles(engine, schema_set)
        warm = _warm_lookup_us(engine, schema_set[0]["schema"])
        backends[backend] = {
            "cold_compile_ms": report.summarize(cold),
            "compile_failures": failures,
            "warm_lookup_us": report.summarize(warm),
            "validity": _validity(engine, schema_set),
            "decode": _decode_rates(engine, schema_set),
        }
        engine.cache.close()
    backends["xgrammar"] = {"skipped": (
        "Outlines 1.3's xgrammar backend supports Transformers/MLX models only, not llama.cpp"
        if importlib.util.find_spec("xgrammar") else "xgrammar not installed")}

    results = {"n_schemas": len(schema_set), "max_tokens": MAX_TOKENS, "backends": backends}
    report.write_results(out_dir, "json", results)
    measured = [b for b in backends if "decode" in backends[b]]
    variants = [(f"{b} {m}", r) for b in measured for m, r in backends[b]["decode"]["ratio_by_mode"].items()]
    report.bar_plot(out_dir / "json_decode_ratio.png", "Constrained / unconstrained decode tok/s (median)",
                    [v[0] for v in variants], [v[1] for v in variants], "ratio", reference_line=0.95)
    report.bar_plot(out_dir / "json_cold_compile.png", f"Cold compile p50 over {len(schema_set)} schemas",
                    measured, [backends[b]["cold_compile_ms"]["p50"] for b in measured], "ms")
    report.bar_plot(out_dir / "json_validity.png", "Validity rate over the schema set",
                    measured, [backends[b]["validity"]["counts"]["validity_rate"] for b in measured],
                    "valid / attempted", reference_line=1.0)
    report.print_table(
        "json: constrained decoding (SmolLM2 Q4_1, llama.cpp, 2 threads)",
        ["backend", "decode tok/s c/u", "median pair ratio c/u (≥0.95)", "cold compile p50/p99 ms",
         "compile fails", "warm lookup p50 µs", "valid/truncated/failed"],
        [(b,
          f"{backends[b]['decode']['tokens_per_s']['constrained']:.1f}/{backends[b]['decode']['tokens_per_s']['unconstrained']:.1f}",
          backends[b]["decode"]["ratio"],
          f"{backends[b]['cold_compile_ms']['p50']:.2f}/{backends[b]['cold_compile_ms']['p99']:.2f}",
          len(backends[b]["compile_failures"]),
          backends[b]["warm_lookup_us"]["p50"],
          "{valid}/{truncated}/{failed}".format(**backends[b]["validity"]["counts"]))
         for b in measured])
    return results
