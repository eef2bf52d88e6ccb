"""`python -m compound.service --host 127.0.0.1 --port 8100 --port-base 8100 [--store URL]`

How `compound serve` starts the chain service. Flags override the env vars listed in
compound/service/settings.py.
"""
from __future__ import annotations

import argparse
import logging
import sys

from compound.services import DEFAULT_PORT_BASE


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m compound.service", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=None, help="default: --port-base (the chain's offset is 0)")
    parser.add_argument("--port-base", type=int, default=DEFAULT_PORT_BASE,
                        help="model nodes are reached on port-base+1..4 unless COMPOUND_NODE_URL_<NODE> is set")
    parser.add_argument("--store", default=None,
                        help="sqlite:///PATH (default: <state dir>/chain-service.db) or postgresql://...")
    parser.add_argument("--allow-private-webhooks", action="store_true", default=None,
                        help="allow webhook_url on loopback/private addresses (dev)")
    parser.add_argument("--workers", type=int, default=None, help="concurrent async jobs (COMPOUND_JOB_WORKERS)")
    parser.add_argument("--log-level", default="info")
    args = parser.parse_args(argv)

    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    import uvicorn

    from compound.service.app import create_app
    from compound.service.settings import Settings

    try:
        settings = Settings.from_env(
            host=args.host, port=args.port if args.port is not None else args.port_base, port_base=args.port_base,
            store_url=args.store, allow_private_webhooks=args.allow_private_webhooks, job_workers=args.workers)
        app = create_app(settings)
    except (ValueError, ImportError) as exc:
        print(f"compound.service: {exc}", file=sys.stderr)
        return 2
    uvicorn.run(app, host=settings.host, port=settings.port, log_level=args.log_level.lower(),
                timeout_graceful_shutdown=5)
    return 0


if __name__ == "__main__":
    sys.exit(main())
