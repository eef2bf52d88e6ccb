"""The Whisper Truss through Truss's own server (fixture `whisper_server`): JSON, multipart,
all response formats, bad input → 4xx naming the problem, and the server keeps serving."""
from __future__ import annotations

import base64
import io
import json
import re

import httpx
import jiwer
import pytest
import speech
import srt
import webvtt

SENTENCES = " ".join(speech.KNOWN_SENTENCES[6:10])


def _norm(text: str) -> str:
    return " ".join(re.sub(r"[^a-z0-9' ]", " ", text.lower()).split())


@pytest.fixture(scope="module")
def client(whisper_server):
    with httpx.Client(base_url=whisper_server, timeout=300) as c:
        yield c


@pytest.fixture(scope="module")
def wav() -> bytes:
    return speech.synthesize_wav(SENTENCES)


def _predict(client, **body) -> httpx.Response:
    return client.post("/v1/models/model:predict", json=body)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def test_json_base64_wav(client, wav):
    r = _predict(client, audio=_b64(wav))
    assert r.status_code == 200, r.text
    assert jiwer.wer(_norm(SENTENCES), _norm(r.json()["text"])) <= 0.15


def test_multipart_upload_openai_style(client, wav):
    mp3 = speech.to_mp3(wav)
    r = client.post("/v1/models/model:predict", files={"file": ("a.mp3", mp3, "audio/mpeg")},
                    data={"response_format": "verbose_json", "timestamp_granularities[]": "word",
                          "model": "whisper-1"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["language"] == "english" and body["segments"] and body["words"]
    assert jiwer.wer(_norm(SENTENCES), _norm(body["text"])) <= 0.15


@pytest.mark.parametrize("fmt,media", [("text", "text/plain"), ("srt", "text/plain"), ("vtt", "text/vtt")])
def test_document_formats(client, wav, fmt, media):
    r = _predict(client, audio=_b64(wav), response_format=fmt)
    assert r.status_code == 200 and r.headers["content-type"].startswith(media)
    if fmt == "srt":
        assert len(list(srt.parse(r.text))) >= 1
    elif fmt == "vtt":
        assert len(webvtt.from_buffer(io.StringIO(r.text)).captions) >= 1
    else:
        assert jiwer.wer(_norm(SENTENCES), _norm(r.text)) <= 0.15


def test_streaming_ndjson(client, wav):
    with client.stream("POST", "/v1/models/model:predict", json={"audio": _b64(wav), "stream": True}) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("application/x-ndjson")
        lines = [json.loads(line) for line in r.iter_lines() if line]
    assert lines[-1]["type"] == "done" and lines[0]["type"] == "segment"


def test_silence_is_200_with_empty_text(client):
    r = _predict(client, audio=_b64(speech.silence_wav(3.0)))
    assert r.status_code == 200 and r.json() == {"text": ""}


BAD = {
    "empty": ({"audio": ""}, 400, "audio is empty"),
    "empty_file": ({"audio": None}, 400, "audio is empty"),
    "bad_base64": ({"audio": "%%% not base64 %%%"}, 400, "base64"),
    "non_audio": ({"audio": _b64(b"plain text, not audio " * 50)}, 400, "not a decodable audio file"),
    "truncated": ({"audio": None}, 400, "truncated"),
    "unsupported_codec": ({"audio": None}, 400, "unsupported audio codec"),
    "private_url": ({"url": "http://127.0.0.1:9/a.wav"}, 403, "non-public address"),
    "bad_scheme": ({"url": "file:///etc/passwd"}, 400, "only http(s)"),
    "unresolvable_url": ({"url": "http://no-such-host.invalid/a.wav"}, 400, "cannot resolve"),
    "bad_format": ({"audio": "AAAA", "response_format": "xml"}, 400, "must be one of"),
}


def _bad_body(name: str) -> dict:
    import struct

    body = dict(BAD[name][0])
    if name == "empty_file":
        body["audio"] = "data:audio/wav;base64,"
    elif name == "truncated":
        w = speech.synthesize_wav(SENTENCES)
        body["audio"] = _b64(w[: len(w) // 2])
    elif name == "unsupported_codec":
        data = b"\0" * 32000
        fmt = struct.pack("<HHIIHH", 0x7777, 1, 16000, 32000, 2, 16)
        body["audio"] = _b64(b"RIFF" + struct.pack("<I", 36 + len(data)) + b"WAVEfmt "
                             + struct.pack("<I", 16) + fmt + b"data" + struct.pack("<I", len(data)) + data)
    return body


@pytest.mark.parametrize("name", list(BAD))
def test_bad_input_is_4xx_naming_the_problem_and_server_keeps_serving(client, name):
    _, status, words = BAD[name]
    r = _predict(client, **_bad_body(name))
    assert r.status_code == status, r.text
    assert words in json.dumps(r.json())
    ok = _predict(client, audio=_b64(speech.synthesize_wav(speech.KNOWN_SENTENCES[0])))
    assert ok.status_code == 200 and "fox" in ok.json()["text"].lower()


def test_not_json_body_is_400(client):
    r = client.post("/v1/models/model:predict", content=b"\x00\x01 not json",
                    headers={"content-type": "application/json"})
    assert r.status_code == 400 and "neither JSON" in r.text


def test_multipart_without_file_is_400(client):
    r = client.post("/v1/models/model:predict", data={"response_format": "json"},
                    files={"other": ("x.txt", b"hi", "text/plain")})
    assert r.status_code == 400 and "'file'" in r.text


def test_over_max_duration_is_413(client):
    # The configured limit (model_metadata.max_audio_seconds) is 4 h; a WAV header claiming
    # 5 h of audio is refused before decoding.
    import struct

    frames = 5 * 3600 * 8000
    header = (b"RIFF" + struct.pack("<I", 36 + frames * 2) + b"WAVEfmt " + struct.pack("<I", 16)
              + struct.pack("<HHIIHH", 1, 1, 8000, 16000, 2, 16) + b"data" + struct.pack("<I", frames * 2))
    r = _predict(client, audio=_b64(header + b"\0" * 16000))
    assert r.status_code == 413 and "limit" in r.text
