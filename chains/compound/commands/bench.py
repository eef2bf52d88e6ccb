"""`compound bench SUITE --out DIR`: run benchmark suites, write results.json + PNGs."""
from __future__ import annotations

import importlib
import time
from pathlib import Path

import click
from rich.console import Console

from compound.bench import SUITES

console = Console(soft_wrap=True)


@click.command()
@click.argument("suite", type=click.Choice([*SUITES, "all"]))
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=Path("bench-results"),
              show_default=True, help="Results folder; each suite writes DIR/<suite>/")
def bench(suite, out_dir):
    """Run SUITE (or all) side by side against its reference."""
    suites = SUITES if suite == "all" else (suite,)
    failed = []
    for name in suites:
        console.rule(f"bench {name}")
        started = time.monotonic()
        module = importlib.import_module(f"compound.bench.{name}")
        try:
            module.run(out_dir / name)
        except Exception as exc:  # one broken suite must not hide the others' figures
            console.print_exception()
            failed.append(f"{name}: {exc}")
        console.print(f"{name}: {time.monotonic() - started:.1f}s → {out_dir / name}")
    if failed:
        raise click.ClickException("suites failed: " + "; ".join(failed))
