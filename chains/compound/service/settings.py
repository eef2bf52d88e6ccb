"""Chain-service configuration: CLI flags override env vars override defaults.

Env vars (all optional):
  COMPOUND_STORE                   store URL (sqlite:///path | postgresql://...);
                                   default sqlite:///<state_dir>/chain-service.db
  COMPOUND_API_KEY                 required API key (Authorization: Bearer KEY or X-API-Key);
                                   unset = auth off (dev), with a startup warning
  COMPOUND_MAX_BODY_BYTES          request size limit (default 32 MiB) -> 413
  COMPOUND_ALLOW_PRIVATE_WEBHOOKS  1 = allow webhook_url on loopback/private addresses (dev)
  COMPOUND_WEBHOOK_SECRET          Standard Webhooks signing secret (whsec_<base64>); unset = one
                                   is generated once and kept in the store (printed at startup)
  COMPOUND_WEBHOOK_SCHEDULE        retry delays in seconds, comma-separated (default: the Standard
                                   Webhooks schedule 0,5,300,1800,7200,18000,36000,50400,72000,86400)
  COMPOUND_WEBHOOK_JITTER          +- fraction of each delay (default 0.1)
  COMPOUND_WEBHOOK_TIMEOUT_S       per delivery attempt (default 15)
  COMPOUND_BASETEN_WEBHOOK_SECRET  secret(s) for X-BASETEN-SIGNATURE, comma-separated
  COMPOUND_PUBLIC_URL              how Baseten reaches us (callback URL base); default http://HOST:PORT
  COMPOUND_JOB_LEASE_S             job lease; a dead worker's job is re-claimed after it (default 30)
  COMPOUND_JOB_WORKERS             concurrent async jobs per process (default 4)
  COMPOUND_MAX_JOB_CLAIMS          a job claimed more often than this (crash loop) fails (default 5)
  COMPOUND_POLL_S                  how often idle workers look for work (default 0.5)
  COMPOUND_CHAIN_PLUGINS           extra chains: comma-separated module names or .py paths, each
                                   defining CHAINS = {name: Chain} (tests register fake chains so)
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Optional

from compound.services import DEFAULT_PORT_BASE

STANDARD_WEBHOOKS_SCHEDULE = (0.0, 5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 50400.0, 72000.0, 86400.0)


def _truthy(value: Optional[str]) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


def default_store_url() -> str:
    from compound.paths import state_dir
    return f"sqlite:///{state_dir() / 'chain-service.db'}"


@dataclass
class Settings:
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT_BASE
    port_base: int = DEFAULT_PORT_BASE
    store_url: Optional[str] = None
    api_key: Optional[str] = None
    max_body_bytes: int = 32 * 1024 * 1024
    allow_private_webhooks: bool = False
    webhook_secret: Optional[str] = None
    webhook_schedule: tuple[float, ...] = STANDARD_WEBHOOKS_SCHEDULE
    webhook_jitter: float = 0.1
    webhook_timeout_s: float = 15.0
    baseten_webhook_secrets: list[str] = field(default_factory=list)
    public_url: Optional[str] = None
    job_lease_s: float = 30.0
    job_workers: int = 4
    max_job_claims: int = 5  # a job interrupted this many times (crash loop) fails instead
    poll_s: float = 0.5
    chain_plugins: list[str] = field(default_factory=list)
    run_workers: bool = True  # False: API only (tests of the HTTP layer)

    @property
    def callback_url(self) -> str:
        base = self.public_url or f"http://{self.host}:{self.port}"
        return base.rstrip("/") + "/v1/callbacks/baseten"

    @classmethod
    def from_env(cls, env=None, **overrides) -> "Settings":
        env = os.environ if env is None else env
        s = cls()
        s.store_url = env.get("COMPOUND_STORE") or None
        s.api_key = env.get("COMPOUND_API_KEY") or None
        if env.get("COMPOUND_MAX_BODY_BYTES"):
            s.max_body_bytes = int(env["COMPOUND_MAX_BODY_BYTES"])
        s.allow_private_webhooks = _truthy(env.get("COMPOUND_ALLOW_PRIVATE_WEBHOOKS"))
        s.webhook_secret = env.get("COMPOUND_WEBHOOK_SECRET") or None
        if env.get("COMPOUND_WEBHOOK_SCHEDULE"):
            s.webhook_schedule = tuple(float(x) for x in env["COMPOUND_WEBHOOK_SCHEDULE"].split(",") if x.strip())
        if env.get("COMPOUND_WEBHOOK_JITTER"):
            s.webhook_jitter = float(env["COMPOUND_WEBHOOK_JITTER"])
        if env.get("COMPOUND_WEBHOOK_TIMEOUT_S"):
            s.webhook_timeout_s = float(env["COMPOUND_WEBHOOK_TIMEOUT_S"])
        s.baseten_webhook_secrets = [x.strip() for x in env.get("COMPOUND_BASETEN_WEBHOOK_SECRET", "").split(",")
                                     if x.strip()]
        s.public_url = env.get("COMPOUND_PUBLIC_URL") or None
        if env.get("COMPOUND_JOB_LEASE_S"):
            s.job_lease_s = float(env["COMPOUND_JOB_LEASE_S"])
        if env.get("COMPOUND_JOB_WORKERS"):
            s.job_workers = int(env["COMPOUND_JOB_WORKERS"])
        if env.get("COMPOUND_MAX_JOB_CLAIMS"):
            s.max_job_claims = int(env["COMPOUND_MAX_JOB_CLAIMS"])
        if env.get("COMPOUND_POLL_S"):
            s.poll_s = float(env["COMPOUND_POLL_S"])
        s.chain_plugins = [x.strip() for x in env.get("COMPOUND_CHAIN_PLUGINS", "").split(",") if x.strip()]
        for key, value in overrides.items():
            if value is not None:
                setattr(s, key, value)
        if not s.webhook_schedule:
            raise ValueError("webhook schedule must have at least one delay")
        return s

    def resolved_store_url(self) -> str:
        return self.store_url or default_store_url()
