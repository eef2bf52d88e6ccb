"""The `compound` console script.

Subcommands live in `compound.commands.<name>` and are imported only when invoked,
so `compound --help` stays fast and one area's heavy imports never slow another's.
"""
from __future__ import annotations

import importlib

import click

# name -> "module:attribute" of a click command or group
SUBCOMMANDS = {
    "serve": "compound.commands.serve:serve",
    "check": "compound.commands.check:check",
    "push": "compound.commands.push:push",
    "demo": "compound.commands.demo:demo",
    "engines": "compound.commands.engines:engines",
    "bench": "compound.commands.bench:bench",
}

HELP = {
    "serve": "Serve Trusses and the chain service locally with Truss's own server.",
    "check": "Validate each Truss and build its image build context.",
    "push": "truss push each Truss to Baseten.",
    "demo": "Bring up the local stack and run the voice and extract chains end to end.",
    "engines": "Plan and build TensorRT-LLM engines per GPU type.",
    "bench": "Run benchmarks side by side against their references.",
}


class LazyGroup(click.Group):
    def list_commands(self, ctx):
        return sorted(SUBCOMMANDS)

    def get_command(self, ctx, name):
        target = SUBCOMMANDS.get(name)
        if target is None:
            return None
        module_name, attribute = target.split(":")
        return getattr(importlib.import_module(module_name), attribute)

    def format_commands(self, ctx, formatter):
        rows = [(name, HELP[name]) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup)
def cli() -> None:
    """compound: model Trusses and a chain service that composes them."""


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
