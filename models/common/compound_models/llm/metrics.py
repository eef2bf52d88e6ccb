"""Prometheus metrics of the LLM backends.

Truss's server mounts prometheus_client's default registry at `/metrics`, so these are
scraped in production and let tests observe server state (cancelled generations, slot
freed) without timing anything.
"""
from __future__ import annotations

from prometheus_client import Counter, Gauge

REQUESTS = Counter(
    "compound_llm_generations",
    "Generations by outcome: completed, cancelled (client gone), error.",
    ["outcome"],
)
TOKENS = Counter("compound_llm_generated_tokens", "Completion tokens generated.")
ACTIVE = Gauge("compound_llm_active_generations", "Generations running on the model now.")
WAITING = Gauge("compound_llm_waiting_generations", "Generations queued for the model (FIFO).")


def parse(text: str) -> dict:
    """Client side: `{"name{labels}": value}` from a /metrics body (no library needed)."""
    values = {}
    for line in text.splitlines():
        if line.startswith("compound_llm_"):
            name, _, value = line.rpartition(" ")
            values[name] = float(value)
    return values
