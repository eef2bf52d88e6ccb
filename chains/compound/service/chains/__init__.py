"""Built-in chains by name. The API answers 404 listing `BUILTIN_CHAINS` for unknown names."""
from __future__ import annotations

from compound.service.chains import extract, fanout, voice
from compound.service.graph import Chain

BUILTIN_CHAINS: dict[str, Chain] = {c.name: c for c in (voice.CHAIN, extract.CHAIN, fanout.CHAIN)}


class UnknownChain(KeyError):
    def __str__(self) -> str:  # KeyError's default repr-quotes the message
        return str(self.args[0])


def get_chain(name: str) -> Chain:
    try:
        return BUILTIN_CHAINS[name]
    except KeyError:
        raise UnknownChain(f"unknown chain {name!r}; available: {', '.join(sorted(BUILTIN_CHAINS))}") from None


def list_chains() -> list[dict]:
    return [BUILTIN_CHAINS[n].describe() for n in sorted(BUILTIN_CHAINS)]
