"""TTS Truss: thin adapter from Truss's predict to compound_models.tts.

Returns a `fastapi.Response` (whole audio) or `StreamingResponse` (one piece per
sentence); Truss's server passes both through with our media type and headers. A
plain generator is not returned on purpose: Truss would gather it into a *text*
body for clients sending `Accept: application/json`.
"""
from pathlib import Path

import starlette.requests
from fastapi import Response
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from compound_models.errors import client_errors
from compound_models.json_body import read_json_body
from compound_models.tts.service import TTSService


class Model:
    def __init__(self, **kwargs):
        self._config = kwargs["config"]
        self._data_dir = kwargs.get("data_dir")
        self._service = None

    def load(self):
        # Relative voice paths in config.yaml are relative to the Truss's data/ dir.
        base_dir = Path(self._data_dir) if self._data_dir else None
        service = TTSService.from_truss_config(self._config, base_dir=base_dir)
        service.load()
        self._service = service

    # Only the request: we parse the body ourselves so any malformed body is a 400
    # (Truss's own parser answers 500 to e.g. deeply nested JSON).
    async def predict(self, request: starlette.requests.Request):
        with client_errors():
            job = self._service.prepare(await read_json_body(request))
        if job.request.stream:
            return StreamingResponse(job.stream(), media_type=job.media_type, headers=job.headers)
        # Synthesis is CPU-bound: off the server's event loop, so other requests keep flowing.
        audio = await run_in_threadpool(job.render)
        return Response(content=audio, media_type=job.media_type, headers=job.headers)
