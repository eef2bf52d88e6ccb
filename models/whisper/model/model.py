"""Whisper Truss: speech → text, OpenAI /v1/audio/transcriptions style (compound_models.whisper).

POST body: JSON `{"audio": "<base64>"}` or `{"url": "https://..."}`, or a multipart upload
with the audio in field `file`; plus `response_format` (json | text | srt | vtt |
verbose_json), `language`, `prompt`, `temperature`, `timestamp_granularities`, `stream`.
"""
import starlette.requests

from compound_models.whisper.service import WhisperService


class Model:
    def __init__(self, **kwargs):
        self._service = WhisperService.from_config(kwargs.get("config"))

    def load(self):
        self._service.load()

    # Only the request: Truss skips its JSON parsing, so multipart uploads reach us too.
    async def predict(self, request: starlette.requests.Request):
        return await self._service.handle(request)
