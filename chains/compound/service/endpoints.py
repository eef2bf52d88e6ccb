"""Where each model node lives: local `compound serve` ports by default, Baseten in production.

Resolution order for node `json` (same for llm, whisper, tts):
  1. explicit `urls={"json": ...}` (tests, the chain Truss's secrets),
  2. env `COMPOUND_NODE_URL_JSON` (e.g. https://model-abc123.api.baseten.co/environments/production),
  3. http://{host}:{port_base + offset} from compound.services (json -> 8103).
Paths are appended by the client and identical everywhere: /predict, /async_predict,
/async_request/{id}.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Mapping, Optional

from compound.services import DEFAULT_PORT_BASE, SERVICES

URL_ENV_PREFIX = "COMPOUND_NODE_URL_"
API_KEY_ENV = "BASETEN_API_KEY"
PORT_BASE_ENV = "COMPOUND_PORT_BASE"


class UnknownNode(KeyError):
    pass


@dataclass
class NodeEndpoints:
    port_base: int = DEFAULT_PORT_BASE
    host: str = "127.0.0.1"
    urls: dict[str, str] = field(default_factory=dict)
    api_key: Optional[str] = None
    env: Mapping[str, str] = field(default_factory=lambda: os.environ)

    @classmethod
    def from_env(
        cls,
        port_base: Optional[int] = None,
        host: str = "127.0.0.1",
        urls: Optional[Mapping[str, str]] = None,
        api_key: Optional[str] = None,
        env: Optional[Mapping[str, str]] = None,
    ) -> "NodeEndpoints":
        env = os.environ if env is None else env
        if port_base is None:
            port_base = int(env.get(PORT_BASE_ENV, DEFAULT_PORT_BASE))
        return cls(
            port_base=port_base,
            host=host,
            urls=dict(urls or {}),
            api_key=api_key if api_key is not None else (env.get(API_KEY_ENV) or None),
            env=env,
        )

    def base_url(self, node: str) -> str:
        if node in self.urls:
            return self.urls[node].rstrip("/")
        from_env = self.env.get(URL_ENV_PREFIX + node.upper())
        if from_env:
            return from_env.rstrip("/")
        service = SERVICES.get(node)
        if service is None or service.truss_dir is None:
            models = [n for n, s in SERVICES.items() if s.truss_dir is not None]
            raise UnknownNode(f"no endpoint for node {node!r}; known: {', '.join(models)}")
        return f"http://{self.host}:{service.port(self.port_base)}"

    def predict_url(self, node: str) -> str:
        return f"{self.base_url(node)}/predict"

    def async_predict_url(self, node: str) -> str:
        return f"{self.base_url(node)}/async_predict"

    def async_status_url(self, node: str, request_id: str) -> str:
        return f"{self.base_url(node)}/async_request/{request_id}"

    def headers(self) -> dict[str, str]:
        # Baseten's auth header; local servers ignore it.
        return {"Authorization": f"Api-Key {self.api_key}"} if self.api_key else {}
