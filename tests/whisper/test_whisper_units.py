"""Whisper building blocks without the speech model: decoding, URL safety, request parsing,
chunking at silences, stitching, subtitle formats."""
from __future__ import annotations

import base64
import functools
import http.server
import io
import socket
import ssl
import struct
import threading
import time

import httpx
import numpy as np
import pytest
import speech
from net_fakes import NON_PUBLIC, PUBLIC, fake_network_sync, self_signed_tls
import srt
import webvtt

from compound_models.errors import InputError
from compound_models.whisper import formats
from compound_models.whisper.audio import SAMPLE_RATE, decode_audio
from compound_models.whisper.chunking import Chunk, plan_chunks, split_long
from compound_models.whisper.fetch import check_url, fetch_audio
from compound_models.whisper.request import from_json
from compound_models.whisper.settings import WhisperSettings
from compound_models.whisper.transcript import ChunkResult, Segment, Stitcher, Transcript, Word

SENTENCE = "The birch canoe slid on the smooth planks. Glue the sheet to the dark blue background."


# -- decoding ------------------------------------------------------------------------------
def test_decode_wav_and_mp3_to_16k_mono():
    wav = speech.synthesize_wav(SENTENCE)
    for data in (wav, speech.to_mp3(wav)):
        audio = decode_audio(data, max_seconds=60)
        assert audio.dtype == np.float32 and audio.ndim == 1
        assert abs(len(audio) / SAMPLE_RATE - speech.wav_duration(wav)) < 0.1
        assert 0.05 < np.abs(audio).max() < 1.1  # lossy codecs and resampling overshoot a little


def _error(fn, *args, **kwargs) -> InputError:
    with pytest.raises(InputError) as info:
        fn(*args, **kwargs)
    return info.value


def test_decode_empty():
    assert "empty" in _error(decode_audio, b"", max_seconds=60).message


def test_decode_non_audio_bytes():
    err = _error(decode_audio, b"this is a text file, not audio\n" * 20, max_seconds=60)
    assert "not a decodable audio file" in err.message and err.status_code == 400


def test_decode_truncated_wav_header():
    err = _error(decode_audio, speech.synthesize_wav(SENTENCE)[:30], max_seconds=60)
    assert err.status_code == 400


def test_decode_truncated_wav_data():
    wav = speech.synthesize_wav(SENTENCE)
    assert "truncated" in _error(decode_audio, wav[: len(wav) // 2], max_seconds=60).message


def test_decode_truncated_mp3():
    mp3 = speech.to_mp3(speech.synthesize_wav(SENTENCE))
    assert "truncated" in _error(decode_audio, mp3[: len(mp3) // 2], max_seconds=60).message


def test_decode_unsupported_codec():
    # A RIFF/WAVE file whose format tag (0x7777) no ffmpeg decoder handles.
    data = np.zeros(16000, dtype=np.int16).tobytes()
    fmt = struct.pack("<HHIIHH", 0x7777, 1, 16000, 32000, 2, 16)
    wav = (b"RIFF" + struct.pack("<I", 36 + len(data)) + b"WAVE" + b"fmt " + struct.pack("<I", 16)
           + fmt + b"data" + struct.pack("<I", len(data)) + data)
    assert "unsupported audio codec" in _error(decode_audio, wav, max_seconds=60).message


def test_decode_over_max_duration_is_413():
    err = _error(decode_audio, speech.synthesize_wav(SENTENCE), max_seconds=2)
    assert err.status_code == 413 and "limit is 2 s" in err.message


# -- request parsing ----------------------------------------------------------------------
def test_request_bad_base64():
    err = _error(from_json, {"audio": "not base64 at all!!"}, max_bytes=10**6)
    assert err.field == "audio" and "base64" in err.message


def test_request_needs_exactly_one_source():
    assert "exactly one" in _error(from_json, {}, max_bytes=10**6).message
    assert "exactly one" in _error(from_json, {"audio": "AAAA", "url": "http://x"}, max_bytes=10**6).message


def test_request_size_limit_is_413():
    err = _error(from_json, {"audio": base64.b64encode(b"x" * 5000).decode()}, max_bytes=1000)
    assert err.status_code == 413


def test_request_fields_validated():
    audio = base64.b64encode(b"RIFF....").decode()
    assert _error(from_json, {"audio": audio, "response_format": "xml"}, max_bytes=10**6).field == "response_format"
    assert _error(from_json, {"audio": audio, "temperature": 3}, max_bytes=10**6).field == "temperature"
    assert _error(from_json, {"audio": audio, "timestamp_granularities": ["char"]},
                  max_bytes=10**6).field == "timestamp_granularities"
    req = from_json({"audio": "data:audio/wav;base64," + audio, "response_format": "verbose_json",
                     "timestamp_granularities": ["word", "segment"], "language": "EN"}, max_bytes=10**6)
    assert req.audio == b"RIFF...." and req.word_timestamps and req.language == "en"


@pytest.mark.parametrize("beam", [0, 11, -1, "five", 2.5, True, [3]])
def test_request_beam_size_out_of_range_or_not_an_integer_names_the_field(beam):
    audio = base64.b64encode(b"RIFF....").decode()
    err = _error(from_json, {"audio": audio, "beam_size": beam}, max_bytes=10**6)
    assert err.field == "beam_size" and err.status_code == 400


def test_request_beam_size_accepted_from_json_and_form_strings():
    audio = base64.b64encode(b"RIFF....").decode()
    assert from_json({"audio": audio}, max_bytes=10**6).beam_size is None  # deployment default
    assert from_json({"audio": audio, "beam_size": 5}, max_bytes=10**6).beam_size == 5
    assert from_json({"audio": audio, "beam_size": "3"}, max_bytes=10**6).beam_size == 3


def test_settings_from_config_and_env():
    s = WhisperSettings.from_config({"model_metadata": {"workers": 3, "allow_private_urls": "false",
                                                        "url_allowed_hosts": ["Media.Local"]}},
                                    environ={"COMPOUND_WHISPER_STRATEGY": "batched"})
    assert (s.workers, s.allow_private_urls, s.url_allowed_hosts, s.strategy) == (3, False, ("media.local",), "batched")
    with pytest.raises(ValueError):
        WhisperSettings.from_config({"model_metadata": {"backend": "nope"}}, environ={})


# -- URL safety ---------------------------------------------------------------------------
@pytest.mark.parametrize("url", ["http://127.0.0.1/a.wav", "http://localhost:9/a.wav",
                                 "http://10.1.2.3/a.wav", "http://[::1]/a.wav",
                                 "http://169.254.169.254/latest/meta-data", "http://0.0.0.0/"])
def test_private_urls_refused(url):
    err = _error(check_url, url, allow_private=False)
    assert err.field == "url" and err.status_code == 403 and "non-public address" in err.message


# NON_PUBLIC / PUBLIC (net_fakes): the same lists the chain webhook guard is tested against.
def _literal_url(address: str) -> str:
    return f"http://[{address}]/a.wav" if ":" in address else f"http://{address}/a.wav"


@pytest.mark.parametrize("address", NON_PUBLIC)
def test_non_global_addresses_refused(address):
    err = _error(check_url, _literal_url(address), allow_private=False)
    assert err.status_code == 403 and "non-public address" in err.message
    check_url(_literal_url(address), allow_private=True)  # allowed when configured


@pytest.mark.parametrize("address", PUBLIC)
def test_public_addresses_pass(address):
    assert check_url(_literal_url(address), allow_private=False) == [address]


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://example.com/a.wav", "gopher://x"])
def test_non_http_schemes_refused(url):
    assert "only http(s)" in _error(check_url, url, allow_private=False).message


class _Handler(http.server.BaseHTTPRequestHandler):
    routes: dict = {}

    def do_GET(self):  # noqa: N802
        status, headers, body = self.routes[self.path]
        if callable(body):
            self.send_response(status)
            for k, v in headers.items():
                self.send_header(k, v)
            self.end_headers()
            body(self.wfile)
            return
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def file_server():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()

    def drip(wfile):
        for _ in range(50):
            wfile.write(b"x" * 10)
            wfile.flush()
            time.sleep(0.1)

    wav = speech.synthesize_wav(SENTENCE)
    _Handler.routes = {
        "/a.wav": (200, {"Content-Type": "audio/wav"}, wav),
        "/redirect-ok": (302, {"Location": "/a.wav"}, b""),
        "/redirect-metadata": (302, {"Location": "http://169.254.169.254/latest/"}, b""),
        "/big": (200, {}, b"x" * 200_000),
        "/missing": (404, {}, b"nope"),
        "/slow": (200, {"Content-Length": "500"}, drip),
    }
    yield f"http://127.0.0.1:{server.server_address[1]}", wav
    server.shutdown()


def _fetch(url, **kw):
    args = dict(max_bytes=10**6, timeout_s=5, allow_private=False, allowed_hosts=("127.0.0.1",))
    return fetch_audio(url, **{**args, **kw})


def test_fetch_allowed_host_and_redirect(file_server):
    base, wav = file_server
    assert _fetch(base + "/a.wav") == wav
    assert _fetch(base + "/redirect-ok") == wav


def test_fetch_refuses_redirect_to_private_address(file_server):
    err = _error(_fetch, file_server[0] + "/redirect-metadata")
    assert err.status_code == 403 and "169.254.169.254" in err.message


def test_fetch_refuses_loopback_by_default(file_server):
    assert _error(_fetch, file_server[0] + "/a.wav", allowed_hosts=()).status_code == 403


def test_fetch_size_cap(file_server):
    assert _error(_fetch, file_server[0] + "/big", max_bytes=100_000).status_code == 413


def test_fetch_time_cap(file_server):
    assert _error(_fetch, file_server[0] + "/slow", timeout_s=1).status_code == 408


def test_fetch_http_error_and_unreachable(file_server):
    assert "HTTP 404" in _error(_fetch, file_server[0] + "/missing").message
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    err = _error(_fetch, f"http://127.0.0.1:{port}/a.wav")
    assert err.status_code == 400 and "could not fetch" in err.message



# -- DNS rebinding: the connection goes to the vetted address, never to a second lookup -----
# `.test` names resolve through net_fakes.fake_network_sync, and a connect to any IP outside
# 127.0.0.0/8 is refused: no traffic leaves the machine.
def _recording_server(tls: ssl.SSLContext | None = None):
    """A local server that records (path, Host header) of every request it gets."""
    seen: list[tuple[str, str]] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            seen.append((self.path, self.headers.get("Host")))
            if self.path == "/hop":
                self.send_response(302)
                self.send_header("Location", "/a.wav")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("Content-Length", "6")
            self.end_headers()
            self.wfile.write(b"secret")

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, seen


@pytest.fixture
def recording_server():
    server, seen = _recording_server()
    yield server.server_address[1], seen
    server.shutdown()
    server.server_close()


def test_fetch_pins_vetted_address_against_dns_rebinding(monkeypatch, recording_server):
    # First answer public (passes the check), every later one 127.0.0.1 where the "internal"
    # server listens. Resolving again at connect time would fetch b"secret" from it.
    port, seen = recording_server
    dialled = fake_network_sync(monkeypatch, {"rebind.test": [["93.184.216.34"], ["127.0.0.1"]]})
    err = _error(fetch_audio, f"http://rebind.test:{port}/a.wav", max_bytes=10**6, timeout_s=5,
                 allow_private=False)
    assert seen == []  # the internal server was never reached
    assert dialled == ["93.184.216.34"]  # only the vetted address was dialled
    assert err.status_code == 400 and "could not fetch" in err.message


def test_fetch_pinned_connection_sends_host_header_and_tries_next_address(monkeypatch,
                                                                          recording_server):
    port, seen = recording_server
    dialled = fake_network_sync(monkeypatch, {"media.test": [["10.255.0.1", "127.0.0.1"]]})
    got = fetch_audio(f"http://media.test:{port}/hop", max_bytes=10**6, timeout_s=5,
                      allow_private=True)
    assert got == b"secret"
    # the redirect is resolved against the name; both hops carry the name in Host
    assert seen == [("/hop", f"media.test:{port}"), ("/a.wav", f"media.test:{port}")]
    # each hop: the first address refuses, the second (in resolver order) answers
    assert dialled == ["10.255.0.1", "127.0.0.1"] * 2


def test_fetch_pinned_https_uses_the_name_for_sni_and_certificate(monkeypatch, tmp_path):
    tls = self_signed_tls("pinned.test", tmp_path)
    server, seen = _recording_server(tls=tls.server)
    try:
        port = server.server_address[1]
        # the client trusts only this certificate (hostname checking stays on)
        monkeypatch.setattr(httpx, "HTTPTransport", functools.partial(httpx.HTTPTransport,
                                                                       verify=tls.trust))
        fake_network_sync(monkeypatch, {"pinned.test": [["127.0.0.1"]], "other.test": [["127.0.0.1"]]})
        kw = {"max_bytes": 10**6, "timeout_s": 5, "allow_private": True}
        assert fetch_audio(f"https://pinned.test:{port}/a.wav", **kw) == b"secret"
        assert tls.sni == ["pinned.test"]  # SNI is the name, though the socket dialled 127.0.0.1
        assert seen == [("/a.wav", f"pinned.test:{port}")]
        # the certificate is checked against the URL's name: another name at the same IP fails
        err = _error(fetch_audio, f"https://other.test:{port}/a.wav", **kw)
        assert "could not fetch" in err.message and "CERTIFICATE_VERIFY_FAILED" in err.message
        assert len(seen) == 1
    finally:
        server.shutdown()
        server.server_close()

# -- chunking ------------------------------------------------------------------------------
def test_plan_chunks_cuts_long_speech_at_silences():
    wav, _ = speech.long_recording(95, seed=11)
    audio = decode_audio(wav, max_seconds=600)
    chunks = plan_chunks(audio, max_seconds=30)
    assert len(chunks) >= 4
    assert all(c.duration <= 30.0 for c in chunks)
    assert all(a.end <= b.start for a, b in zip(chunks, chunks[1:]))  # ascending, no overlap
    speech_rms = np.sqrt(np.mean(audio ** 2))
    for a, b in zip(chunks, chunks[1:]):
        gap = audio[a.end:b.start]  # between chunks: the pause the cut was made in
        assert gap.size == 0 or np.sqrt(np.mean(gap ** 2)) < 0.05 * speech_rms


def test_split_long_region_at_quietest_point():
    # 70 s of tone, with 0.2 s dips at 20 s and 48 s: both cuts must land in the dips.
    t = np.arange(70 * SAMPLE_RATE) / SAMPLE_RATE
    audio = (0.5 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    for dip in (20.0, 48.0):
        audio[int(dip * SAMPLE_RATE): int((dip + 0.2) * SAMPLE_RATE)] = 0
    pieces = split_long(Chunk(0, len(audio)), audio, 30 * SAMPLE_RATE)
    cuts = [p.end / SAMPLE_RATE for p in pieces[:-1]]
    assert len(pieces) == 3 and all(p.duration <= 30 for p in pieces)
    assert abs(cuts[0] - 20.1) < 0.06 and abs(cuts[1] - 48.1) < 0.06
    assert pieces[0].start == 0 and pieces[-1].end == len(audio)


# -- stitching ------------------------------------------------------------------------------
def test_stitcher_adds_offsets_clamps_and_stays_monotonic():
    c1, c2 = Chunk(0, 10 * SAMPLE_RATE), Chunk(12 * SAMPLE_RATE, 20 * SAMPLE_RATE)
    stitcher = Stitcher()
    stitcher.add(c1, ChunkResult([Segment(0.5, 4.0, " one two", [Word(0.5, 1.0, " one"), Word(1.2, 4.0, " two")]),
                                  Segment(4.0, 11.5, " three"),  # past the chunk's end: clamped to 10
                                  Segment(9.0, 9.5, "  ")], "en"))  # empty: dropped
    stitcher.add(c2, ChunkResult([Segment(0.0, 3.0, " four", [Word(0.0, 3.0, " four")])], "en"))
    t = stitcher.finish(20.0)
    assert t.text == "one two three four"
    assert [(s.start, s.end) for s in t.segments] == [(0.5, 4.0), (4.0, 10.0), (12.0, 15.0)]
    assert [(w.start, w.end, w.word) for w in t.words] == [(0.5, 1.0, " one"), (1.2, 4.0, " two"),
                                                          (12.0, 15.0, " four")]


# -- formats -------------------------------------------------------------------------------
def _transcript() -> Transcript:
    segs = [Segment(0.0, 2.5, "Hello there."), Segment(2.5, 3661.25, "A long one.")]
    return Transcript("Hello there. A long one.", "en", 3662.0, segs)


def test_srt_and_vtt_parse_back():
    t = _transcript()
    subs = list(srt.parse(formats.render(t, "srt")))
    assert [(s.start.total_seconds(), s.end.total_seconds(), s.content) for s in subs] == \
        [(0.0, 2.5, "Hello there."), (2.5, 3661.25, "A long one.")]
    vtt = webvtt.from_buffer(io.StringIO(formats.render(t, "vtt")))
    assert [(c.start, c.end, c.text) for c in vtt] == [("00:00:00.000", "00:00:02.500", "Hello there."),
                                                      ("00:00:02.500", "01:01:01.250", "A long one.")]


def test_json_formats():
    t = _transcript()
    assert formats.render(t, "json") == {"text": t.text}
    body = formats.render(t, "verbose_json")
    assert body["language"] == "english" and body["duration"] == 3662.0 and "words" not in body
    assert [s["id"] for s in body["segments"]] == [0, 1]
    assert formats.render(t, "text") == t.text + "\n"
