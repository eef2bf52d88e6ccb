"""Shared reporting for benchmark suites: machine facts, results.json, PNG plots, tables."""
from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Iterable, Mapping, Sequence

from rich.console import Console
from rich.table import Table

console = Console()

_VERSIONED = (
    "truss", "llama-cpp-python", "faster-whisper", "ctranslate2", "piper-tts",
    "onnxruntime", "outlines", "llguidance", "openai-whisper", "torch",
)


def machine_info() -> dict:
    versions = {}
    for name in _VERSIONED:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "versions": versions,
        "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile (no interpolation, so p99 of few samples is the max)."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = max(1, min(len(ordered), round(pct / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def summarize(values: Sequence[float]) -> dict:
    return {
        "n": len(values),
        "p50": percentile(values, 50),
        "p99": percentile(values, 99),
        "mean": statistics.fmean(values) if values else float("nan"),
        "min": min(values) if values else float("nan"),
        "max": max(values) if values else float("nan"),
    }


def write_results(out_dir: Path, suite: str, results: Mapping) -> Path:
    """Write `<out_dir>/results.json` with machine facts next to the suite's figures."""
    out_dir.mkdir(parents=True, exist_ok=True)
    payload = {"suite": suite, "machine": machine_info(), **results}
    path = out_dir / "results.json"
    path.write_text(json.dumps(payload, indent=2, default=str))
    return path


def bar_plot(path: Path, title: str, labels: Sequence[str], values: Sequence[float],
             ylabel: str, reference_line: float | None = None) -> Path:
    """One bar per label; optional horizontal target line (e.g. ratio 1.0)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    bars = ax.bar(labels, values, color="#4C72B0")
    ax.bar_label(bars, fmt="%.3g")
    if reference_line is not None:
        ax.axhline(reference_line, color="#C44E52", linestyle="--", linewidth=1)
    ax.set_title(title)
    ax.set_ylabel(ylabel)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def print_table(title: str, columns: Sequence[str], rows: Iterable[Sequence]) -> None:
    table = Table(title=title)
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*[f"{c:.4g}" if isinstance(c, float) else str(c) for c in row])
    console.print(table)
