"""The Whisper Truss's request handling: parse → fetch/decode → transcribe → render.

`predict` takes only the Starlette request (Truss then skips its own JSON parsing), so one
endpoint serves both JSON bodies and OpenAI-style multipart uploads.

Silence: audio that decodes but holds no speech returns 200 with empty text ("" / no
segments), as OpenAI's API does; errors are only for input that cannot be used.
"""
from __future__ import annotations

import asyncio
import json
import logging
from typing import Any, Iterator, Mapping, Optional

import numpy as np

from compound_models.errors import InputError, client_errors
from compound_models.json_body import parse_json_body
from compound_models.whisper import formats
from compound_models.whisper.audio import decode_audio
from compound_models.whisper.backends import load_backend
from compound_models.whisper.fetch import fetch_audio
from compound_models.whisper.pipeline import Transcriber
from compound_models.whisper.request import TranscriptionRequest, from_form, from_json
from compound_models.whisper.settings import WhisperSettings
from compound_models.whisper.transcript import DecodeOptions, Stitcher

log = logging.getLogger("compound.whisper")


class WhisperService:
    def __init__(self, settings: WhisperSettings, backend=None):
        self.settings = settings
        self.backend = backend
        self.transcriber: Optional[Transcriber] = None
        if backend is not None:
            self._make_transcriber()

    @classmethod
    def from_config(cls, config: Optional[Mapping[str, Any]]) -> "WhisperService":
        return cls(WhisperSettings.from_config(config))

    def load(self) -> None:
        if self.backend is None:
            self.backend = load_backend(self.settings)
        self._make_transcriber()

    def _make_transcriber(self) -> None:
        strategy = self.settings.strategy
        if self.backend.name != "faster-whisper" and strategy != "threads":
            strategy = "threads"  # batched/sequential are faster-whisper features
        self.transcriber = Transcriber(self.backend, strategy=strategy,
                                       chunk_seconds=self.settings.chunk_seconds,
                                       min_silence_ms=self.settings.min_silence_ms)

    # -- request → audio ---------------------------------------------------------------
    async def parse(self, request) -> TranscriptionRequest:
        content_type = request.headers.get("content-type", "")
        limit = self.settings.max_upload_bytes
        if content_type.startswith("multipart/form-data"):
            try:
                form = await request.form()
            except Exception as exc:  # malformed multipart → starlette raises various errors
                raise InputError(f"malformed multipart body ({exc})", field="file") from exc
            return await from_form(form, max_bytes=limit)
        raw = await request.body()
        if len(raw) > limit * 4 // 3 + 4096:
            raise InputError(f"request body is larger than the limit of {limit} bytes of audio",
                             status_code=413)
        try:
            body = parse_json_body(raw)
        except InputError as exc:
            raise InputError(f"body is neither JSON nor multipart/form-data: {exc.message}") from exc
        return from_json(body, max_bytes=limit)

    def load_audio(self, req: TranscriptionRequest) -> np.ndarray:
        s = self.settings
        if req.url is not None:
            data = fetch_audio(req.url, max_bytes=s.max_upload_bytes, timeout_s=s.url_timeout_s,
                               allow_private=s.allow_private_urls, max_redirects=s.url_max_redirects,
                               allowed_hosts=s.url_allowed_hosts)
            field = "url"
        else:
            data, field = req.audio, req.extra.get("field", "audio")
        return decode_audio(data, max_seconds=s.max_audio_seconds, field=field)

    def options(self, req: TranscriptionRequest) -> DecodeOptions:
        if req.language not in (None, "en") and not self.backend.multilingual:
            raise InputError(f"this deployment's model is English-only; language "
                             f"{req.language!r} is not supported", field="language")
        return DecodeOptions(language=req.language, prompt=req.prompt, temperature=req.temperature,
                             word_timestamps=req.word_timestamps,
                             beam_size=req.beam_size or self.settings.beam_size)

    # -- transcription -------------------------------------------------------------------
    def run(self, req: TranscriptionRequest):
        """Blocking: the whole response (dict for JSON formats, fastapi.Response otherwise)."""
        options = self.options(req)
        audio = self.load_audio(req)
        transcript = self.transcriber.transcribe(audio, options, label=_label(req))
        body = formats.render(transcript, req.response_format, req.word_timestamps)
        if isinstance(body, str):
            from fastapi import Response

            return Response(content=body, media_type=formats.MEDIA_TYPES[req.response_format])
        return body

    def stream_lines(self, audio: np.ndarray, req: TranscriptionRequest) -> Iterator[bytes]:
        """NDJSON: one {"type": "segment", ...} line per segment as chunks finish, then "done"."""
        stitcher = Stitcher()
        index = 0
        for seg in self.transcriber.stream(audio, self.options(req), stitcher, label=_label(req)):
            line = {"type": "segment", **formats.segment_json(index, seg)}
            if req.word_timestamps:
                line["words"] = [{"word": w.word.strip(), "start": w.start, "end": w.end}
                                 for w in seg.words]
            index += 1
            yield (json.dumps(line) + "\n").encode()
        t = stitcher.finish(len(audio) / 16000)
        yield (json.dumps({"type": "done", "text": t.text, "language": t.language,
                           "duration": t.duration}) + "\n").encode()

    async def handle(self, request):
        """Truss `predict(request)`: InputError anywhere → 4xx with the message."""
        with client_errors():
            req = await self.parse(request)
            if req.stream:
                from fastapi.responses import StreamingResponse

                # Check and decode before streaming starts, so bad input is still a 4xx status.
                self.options(req)
                audio = await asyncio.to_thread(self.load_audio, req)
                return StreamingResponse(self.stream_lines(audio, req),
                                         media_type="application/x-ndjson")
            return await asyncio.to_thread(self.run, req)


def _label(req: TranscriptionRequest) -> str:
    return req.url or f"{len(req.audio or b'')} bytes"
