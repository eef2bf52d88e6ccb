"""`compound serve`: run the Trusses and the chain service locally until Ctrl-C/SIGTERM."""
from __future__ import annotations

import ipaddress
import os
import signal
import sys
import time
from typing import Mapping, Optional

import click
from rich.console import Console

from compound.runtime.supervisor import Stack, StackError
from compound.services import DEFAULT_PORT_BASE, SERVICES, UnknownService, resolve

console = Console(stderr=True, soft_wrap=True)


def is_loopback_host(host: str) -> bool:
    """`localhost` or a loopback IP literal (127.0.0.0/8, ::1); any other name counts as not."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip().strip("[]")).is_loopback
    except ValueError:
        return False


def chain_service_env(host: str, allow_private_webhooks: Optional[bool], store: Optional[str],
                      environ: Optional[Mapping[str, str]] = None) -> dict[str, str]:
    """The variables `compound serve` sets for its services, over the inherited environment.

    Private webhooks: an explicit flag wins; otherwise a COMPOUND_ALLOW_PRIVATE_WEBHOOKS the
    user set is left alone; otherwise they are allowed only on a loopback bind (local dev: the
    receivers are local), never when the service listens on other interfaces, where anyone who
    reaches it could make it POST into the private network. `--store` sets COMPOUND_STORE.
    """
    environ = os.environ if environ is None else environ
    env: dict[str, str] = {}
    if allow_private_webhooks is not None:
        env["COMPOUND_ALLOW_PRIVATE_WEBHOOKS"] = "1" if allow_private_webhooks else "0"
    elif "COMPOUND_ALLOW_PRIVATE_WEBHOOKS" not in environ:
        env["COMPOUND_ALLOW_PRIVATE_WEBHOOKS"] = "1" if is_loopback_host(host) else "0"
    if store:
        env["COMPOUND_STORE"] = store
    return env


def _log_sink(name: str, line: str) -> None:
    # Prefix every line with its service, so interleaved logs stay readable.
    sys.stderr.write(f"[{name:<7}] {line}\n")
    sys.stderr.flush()


@click.command()
@click.argument("names", nargs=-1)
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to bind.")
@click.option("--port-base", default=DEFAULT_PORT_BASE, show_default=True, type=int,
              help="chain +0, llm +1, whisper +2, json +3, tts +4")
@click.option("--ready-timeout", default=600.0, show_default=True, help="Seconds to wait for readiness.")
@click.option("--allow-private-webhooks/--no-allow-private-webhooks", default=None,
              help="Let the chain service deliver webhooks to loopback/private addresses. Default: "
                   "COMPOUND_ALLOW_PRIVATE_WEBHOOKS if set, else allowed only when --host is a "
                   "loopback address (local dev; a wider bind would expose an SSRF).")
@click.option("--store", default=None, metavar="URL",
              help="Chain service store: sqlite:///PATH or postgresql://... (sets COMPOUND_STORE; "
                   "default: that variable, else SQLite under the state dir).")
def serve(names, host, port_base, ready_timeout, allow_private_webhooks, store):
    """Serve NAMES (default: all of """ + ", ".join(SERVICES) + """) with Truss's own server."""
    try:
        services = resolve(list(names))
    except UnknownService as exc:
        raise click.UsageError(str(exc)) from exc
    env = chain_service_env(host, allow_private_webhooks, store)
    stack = Stack(host=host, port_base=port_base, log_sink=_log_sink, ready_timeout_s=ready_timeout,
                  env=env)
    stopping = False

    def _stop(signum, _frame):
        nonlocal stopping
        stopping = True
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _stop)
    try:
        urls = stack.start_services(services)
        for service in services:
            console.print(f"[bold green]ready[/] {service.name:<8} {urls[service.name]}")
        while True:
            failed = stack.failed_services()
            if failed:
                for rs in failed:
                    console.print(f"[bold red]{rs.name} exited[/] with code {rs.process.returncode}")
                raise SystemExit(1)
            time.sleep(0.5)
    except StackError as exc:
        console.print(f"[bold red]error:[/] {exc}")
        raise SystemExit(1)
    except KeyboardInterrupt:
        console.print("stopping all services…")
    finally:
        stack.stop()
