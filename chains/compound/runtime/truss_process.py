"""One Truss, served on the host by Truss's own model server (no Docker).

    python -m compound.runtime.truss_process --truss models/llm --port 8101

Builds the Truss's image file system (see truss_fs), then runs `TrussServer` from the
built `/app` dir exactly as the image's `main.py` would, with two local additions on
the same port: Baseten's `/predict` path alias and the async inference API
(`/async_predict`, `/async_request/{id}`), so chain code sees Baseten's URL shapes.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from unittest import mock

import uvicorn
from fastapi import Depends, Request

from compound.paths import state_dir
from compound.runtime.truss_fs import build_truss_fs

log = logging.getLogger("compound.runtime")


def _connect_host(bind_host: str) -> str:
    """Where this process reaches its own server, given the interface it binds."""
    if bind_host in ("", "0.0.0.0", "::", "localhost"):
        return "127.0.0.1"
    return f"[{bind_host}]" if ":" in bind_host else bind_host


def _local_server_class(truss_server_module, host: str):
    """TrussServer plus local-only routes, bound to `host` instead of 0.0.0.0."""
    from compound.runtime.async_api import AsyncInferenceQueue, install_async_routes

    TrussServer = truss_server_module.TrussServer
    parse_body = truss_server_module.parse_body

    class LocalTrussServer(TrussServer):
        def __init__(self, http_port: int, config_or_path):
            super().__init__(http_port=http_port, config_or_path=config_or_path)
            runtime = self._config.get("runtime") or {}
            self.async_queue = AsyncInferenceQueue(
                predict_url=f"http://{_connect_host(host)}:{http_port}/v1/models/model:predict",
                model_id=self._config.get("model_name") or "model",
                workers=int(runtime.get("predict_concurrency") or 1),
            )

        def create_application(self):
            app = super().create_application()
            endpoints = self._endpoints

            # Baseten's deployed URL shape is `.../predict`; serve it too so node URLs
            # differ between local and production only in their base.
            @app.post("/predict", tags=["V1"])
            async def predict_alias(request: Request, body_raw: bytes = Depends(parse_body)):
                return await endpoints.predict("model", request, body_raw)

            install_async_routes(app, self.async_queue)
            return app

        def start(self):
            # TrussServer.start() hard-codes host 0.0.0.0 (right in a container). Locally we
            # bind the requested interface (127.0.0.1 by default) and change nothing else.
            real_config = uvicorn.Config

            def config_on_host(*args, **kwargs):
                kwargs["host"] = host
                return real_config(*args, **kwargs)

            with mock.patch.object(truss_server_module.uvicorn, "Config", config_on_host):
                super().start()

    return LocalTrussServer


def serve(truss_dir: Path, port: int, host: str, work_dir: Path) -> None:
    fs = build_truss_fs(truss_dir.resolve(), work_dir)
    # As in the image: the bundled packages dir and /app are importable, cwd is /app.
    sys.path[:0] = [str(fs.root / "packages"), str(fs.app_dir)]
    os.chdir(fs.app_dir)
    os.environ["INFERENCE_SERVER_PORT"] = str(port)
    import truss_server  # from the built /app: Truss's own server code

    server_class = _local_server_class(truss_server, host)
    server_class(http_port=port, config_or_path="config.yaml").start()


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--truss", required=True, type=Path, help="Truss directory")
    parser.add_argument("--port", required=True, type=int)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--work-dir", type=Path, default=None,
                        help="where the image file system is built (default .compound/build/<name>-<port>)")
    args = parser.parse_args(argv)
    work_dir = args.work_dir or state_dir() / "build" / f"{args.truss.resolve().name}-{args.port}"
    serve(args.truss, args.port, args.host, work_dir)


if __name__ == "__main__":
    main()
