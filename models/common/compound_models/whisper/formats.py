"""Render a Transcript as OpenAI `/v1/audio/transcriptions` does, per `response_format`.

json → {"text"}; verbose_json → {"task", "language", "duration", "text", "segments",
"words"?}; text → plain text; srt / vtt → subtitle documents written with the `srt` and
`webvtt-py` libraries (so they follow the formats those parsers read back).
"""
from __future__ import annotations

import datetime
from typing import Any

from compound_models.whisper.transcript import Segment, Transcript

MEDIA_TYPES = {"text": "text/plain; charset=utf-8", "srt": "text/plain; charset=utf-8",
               "vtt": "text/vtt; charset=utf-8"}


def segment_json(index: int, seg: Segment) -> dict[str, Any]:
    return {"id": index, "start": seg.start, "end": seg.end, "text": seg.text,
            "avg_logprob": seg.avg_logprob, "no_speech_prob": seg.no_speech_prob}


def verbose_json(t: Transcript, include_words: bool) -> dict[str, Any]:
    body: dict[str, Any] = {
        "task": "transcribe", "language": _language_name(t.language), "duration": t.duration,
        "text": t.text, "segments": [segment_json(i, s) for i, s in enumerate(t.segments)],
    }
    if include_words:
        body["words"] = [{"word": w.word.strip(), "start": w.start, "end": w.end} for w in t.words]
    return body


def to_srt(t: Transcript) -> str:
    import srt

    subtitles = [srt.Subtitle(index=i + 1, start=_td(s.start), end=_td(max(s.end, s.start + 0.001)),
                              content=s.text) for i, s in enumerate(t.segments)]
    return srt.compose(subtitles, reindex=False)


def to_vtt(t: Transcript) -> str:
    import webvtt

    vtt = webvtt.WebVTT()
    for s in t.segments:
        vtt.captions.append(webvtt.Caption(start=_clock(s.start), end=_clock(max(s.end, s.start + 0.001)),
                                           text=s.text))
    return vtt.content


def render(t: Transcript, response_format: str, include_words: bool = False) -> Any:
    """dict for json formats, str for text/srt/vtt."""
    if response_format == "json":
        return {"text": t.text}
    if response_format == "verbose_json":
        return verbose_json(t, include_words)
    if response_format == "text":
        return t.text + "\n" if t.text else ""
    if response_format == "srt":
        return to_srt(t)
    if response_format == "vtt":
        return to_vtt(t)
    raise ValueError(response_format)


def _td(seconds: float) -> datetime.timedelta:
    return datetime.timedelta(milliseconds=round(seconds * 1000))


def _clock(seconds: float) -> str:
    ms = round(seconds * 1000)
    h, ms = divmod(ms, 3_600_000)
    m, ms = divmod(ms, 60_000)
    s, ms = divmod(ms, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}.{ms:03d}"


# OpenAI reports the language by name; the common ones here, the ISO code otherwise.
_LANGUAGES = {"en": "english", "de": "german", "fr": "french", "es": "spanish", "it": "italian",
              "pt": "portuguese", "nl": "dutch", "ja": "japanese", "zh": "chinese", "ko": "korean",
              "ru": "russian", "pl": "polish", "tr": "turkish", "ar": "arabic", "hi": "hindi"}


def _language_name(code: str | None) -> str | None:
    return None if code is None else _LANGUAGES.get(code, code)
