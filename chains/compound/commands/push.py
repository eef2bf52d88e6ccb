"""`compound push`: `truss push` each Truss (needs a Baseten API key; never run in tests)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import click

from compound.commands.check import _resolve_dirs


@click.command()
@click.argument("names", nargs=-1)
@click.option("--remote", default="baseten", show_default=True)
@click.option("--promote/--no-promote", default=False, help="Promote to production.")
@click.option("--dry-run", is_flag=True, help="Print the truss push commands only.")
def push(names, remote, promote, dry_run):
    """truss push NAMES (default: every Truss)."""
    if not dry_run and not (os.environ.get("BASETEN_API_KEY") or _has_truss_rc()):
        raise click.ClickException(
            "no Baseten credentials: set BASETEN_API_KEY or run `truss login` first"
        )
    for name, truss_dir in _resolve_dirs(names):
        command = [str(Path(sys.executable).parent / "truss"), "push", str(truss_dir), "--remote", remote]
        if promote:
            command.append("--promote")
        click.echo(f"{name}: {' '.join(command)}")
        if not dry_run:
            subprocess.run(command, check=True)


def _has_truss_rc() -> bool:
    return os.path.exists(os.path.expanduser("~/.trussrc"))
