"""The services `compound serve` knows: the four model Trusses and the chain service."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from compound.paths import MODELS_DIR

DEFAULT_PORT_BASE = 8100


@dataclass(frozen=True)
class Service:
    name: str
    port_offset: int
    truss_dir: Optional[Path]  # None for the chain service (a FastAPI app)

    def port(self, port_base: int = DEFAULT_PORT_BASE) -> int:
        return port_base + self.port_offset


SERVICES: dict[str, Service] = {
    "chain": Service("chain", 0, None),
    "llm": Service("llm", 1, MODELS_DIR / "llm"),
    "whisper": Service("whisper", 2, MODELS_DIR / "whisper"),
    "json": Service("json", 3, MODELS_DIR / "json"),
    "tts": Service("tts", 4, MODELS_DIR / "tts"),
}
TRUSS_NAMES = tuple(name for name, s in SERVICES.items() if s.truss_dir is not None)


class UnknownService(ValueError):
    pass


def resolve(names) -> list[Service]:
    """Services by name, in port order; all of them when `names` is empty."""
    if not names:
        return list(SERVICES.values())
    unknown = [n for n in names if n not in SERVICES]
    if unknown:
        raise UnknownService(
            f"unknown service {', '.join(repr(n) for n in unknown)}; valid: {', '.join(SERVICES)}"
        )
    return sorted((SERVICES[n] for n in dict.fromkeys(names)), key=lambda s: s.port_offset)
