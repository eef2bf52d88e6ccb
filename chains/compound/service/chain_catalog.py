"""Which chains this service runs: the built-in ones (compound.service.chains) plus plugins.

Plugins (settings.chain_plugins / env COMPOUND_CHAIN_PLUGINS) are module names or .py file
paths defining `CHAINS = {name: Chain}`; tests use this to register chains whose nodes are
fake servers they control. A plugin may shadow a built-in name (logged).
"""
from __future__ import annotations

import importlib
import importlib.util
import logging
from pathlib import Path
from typing import Iterable

from compound.service.graph import Chain

log = logging.getLogger("compound.service")


def _builtin() -> dict[str, Chain]:
    try:
        from compound.service.chains import BUILTIN_CHAINS
    except ImportError as exc:  # the built-in chains are optional for the service machinery
        log.warning("built-in chains unavailable: %s", exc)
        return {}
    return dict(BUILTIN_CHAINS)


def _load_plugin(spec: str) -> dict[str, Chain]:
    if spec.endswith(".py"):
        path = Path(spec).resolve()
        mod_spec = importlib.util.spec_from_file_location(f"compound_chain_plugin_{path.stem}", path)
        if mod_spec is None or mod_spec.loader is None:
            raise ImportError(f"cannot load chain plugin {spec}")
        module = importlib.util.module_from_spec(mod_spec)
        mod_spec.loader.exec_module(module)
    else:
        module = importlib.import_module(spec)
    chains = getattr(module, "CHAINS", None)
    if not isinstance(chains, dict):
        raise ImportError(f"chain plugin {spec} must define CHAINS = {{name: Chain}}")
    return chains


class ChainCatalog:
    def __init__(self, chains: dict[str, Chain]):
        self._chains = dict(chains)

    @classmethod
    def load(cls, plugins: Iterable[str] = ()) -> "ChainCatalog":
        chains = _builtin()
        for spec in plugins:
            extra = _load_plugin(spec)
            for name in extra:
                if name in chains:
                    log.warning("chain plugin %s replaces chain %r", spec, name)
            chains.update(extra)
        return cls(chains)

    def get(self, name: str) -> Chain:
        return self._chains[name]  # KeyError -> 404 listing names()

    def names(self) -> list[str]:
        return sorted(self._chains)
