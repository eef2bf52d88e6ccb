"""TTS Truss: thin adapter from Truss's predict to compound_models.tts.

Returns a `fastapi.Response` (whole audio) or `StreamingResponse` (one piece per
sentence); Truss's server passes both through with our media type and headers. A
plain generator is not returned on purpose: Truss would gather it into a *text*
body for clients sending `Accept: application/json`.
"""
from pathlib import Path

from fastapi import Response
from fastapi.responses import StreamingResponse

from compound_models.errors import client_errors
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

    def predict(self, model_input):
        with client_errors():
            job = self._service.prepare(model_input)
        if job.request.stream:
            return StreamingResponse(job.stream(), media_type=job.media_type, headers=job.headers)
        return Response(content=job.render(), media_type=job.media_type, headers=job.headers)
