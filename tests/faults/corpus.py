"""Bad-input corpus: requests every model node must refuse with a 4xx and a message.

Data only; tests/test_fault_bad_inputs.py sends each case to the real Truss. All payloads are
built deterministically (fixed seeds), so a failing case id reproduces exactly.

A case is a raw HTTP body plus content type, so the corpus can say things JSON libraries
would refuse to say (truncated JSON, invalid UTF-8, 100k-deep nesting).
"""
from __future__ import annotations

import base64
import io
import json
import math
import random
import wave
from dataclasses import dataclass

JSON = "application/json"


@dataclass(frozen=True)
class Case:
    id: str
    body: bytes
    content_type: str = JSON
    why: str = ""  # what a server must not do with it


def _j(obj) -> bytes:
    return json.dumps(obj).encode()


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def _sine_wav(seconds: float = 1.0, rate: int = 16000) -> bytes:
    """A valid 16-bit mono WAV (440 Hz tone): the base the truncated cases cut from."""
    frames = bytearray()
    for i in range(int(seconds * rate)):
        value = int(8000 * math.sin(2 * math.pi * 440 * i / rate))
        frames += value.to_bytes(2, "little", signed=True)
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(bytes(frames))
    return buf.getvalue()


_RNG = random.Random(9)
GARBAGE = _RNG.randbytes(8192)  # random bytes: no container, no codec
WAV = _sine_wav()
DEPTH = 100_000  # far beyond any parser's recursion limit

# Requests that are wrong for every node, whatever its API.
COMMON: list[Case] = [
    Case("empty-body", b"", why="no body at all"),
    Case("truncated-json", b'{"input": "hello", "messages": [', why="JSON cut off mid-way"),
    Case("not-json", b"hello there, model", why="plain text sent as JSON"),
    Case("json-array", _j([1, 2, 3]), why="top level must be an object"),
    Case("json-string", _j("just a string"), why="top level must be an object"),
    Case("json-null", b"null", why="top level must be an object"),
    Case("deeply-nested-object", b'{"a":' * DEPTH + b"1" + b"}" * DEPTH,
         why="recursion bomb: the JSON parser must not crash into a 500"),
    Case("deeply-nested-array", b'{"input": ' + b"[" * DEPTH + b"]" * DEPTH + b"}",
         why="recursion bomb inside a field"),
    Case("invalid-utf8", b'{"input": "\xff\xfe\xfa bad bytes", "messages": "\xc3\x28"}',
         why="bytes that are not UTF-8 inside a JSON string"),
    Case("lone-surrogates", b'{"input": "\\ud800\\udfff\\ud800", "prompt": "\\udc00",'
                            b' "messages": [{"role": "user", "content": "\\ud800"}]}',
         why="JSON escapes that decode to unpaired UTF-16 surrogates, unencodable as UTF-8"),
    Case("octet-stream-garbage", GARBAGE, "application/octet-stream",
         why="random bytes sent as a binary (msgpack) body"),
    Case("octet-stream-json", _j({"input": "hi"}), "application/octet-stream",
         why="JSON labelled as binary: it is not msgpack"),
    Case("wrong-content-type-form", b"input=hello&speed=1", "application/x-www-form-urlencoded",
         why="a form body where JSON is expected"),
    Case("integer-over-4300-digits", b'{"input": "hi", "max_tokens": ' + b"9" * 5000 + b"}",
         why="Python's json refuses ints over 4300 digits with a plain ValueError"),
]

LLM: list[Case] = [
    Case("llm-no-messages", _j({"max_tokens": 8}), why="messages is required"),
    Case("llm-messages-not-list", _j({"messages": "hi"})),
    Case("llm-empty-messages", _j({"messages": []})),
    Case("llm-bad-role", _j({"messages": [{"role": "wizard", "content": "hi"}]})),
    Case("llm-content-number", _j({"messages": [{"role": "user", "content": 42}]})),
    Case("llm-negative-max-tokens", _j({"messages": [{"role": "user", "content": "hi"}], "max_tokens": -5})),
    Case("llm-huge-max-tokens", _j({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 10**12})),
    Case("llm-temperature-string", _j({"messages": [{"role": "user", "content": "hi"}], "temperature": "hot"})),
    Case("llm-temperature-negative", _j({"messages": [{"role": "user", "content": "hi"}], "temperature": -1})),
    Case("llm-huge-text", _j({"messages": [{"role": "user", "content": "word " * 400_000}], "max_tokens": 4}),
         why="2 MB prompt: far over the context window, must be refused, not truncated silently"),
    Case("llm-stream-not-bool", _j({"messages": [{"role": "user", "content": "hi"}], "stream": "yes"})),
]

WHISPER: list[Case] = [
    Case("whisper-no-audio", _j({"response_format": "json"}), why="audio or url is required"),
    Case("whisper-audio-not-base64", _j({"audio": "!!!not base64!!!"})),
    Case("whisper-audio-empty", _j({"audio": ""})),
    Case("whisper-audio-number", _j({"audio": 12345})),
    Case("whisper-garbage-audio", _j({"audio": _b64(GARBAGE)}), why="random bytes, not audio"),
    Case("whisper-text-as-audio", _j({"audio": _b64(b"this is text, not sound " * 50)})),
    Case("whisper-truncated-wav-header", _j({"audio": _b64(WAV[:20])}), why="WAV cut inside its header"),
    Case("whisper-bad-format", _j({"audio": _b64(WAV), "response_format": "docx"})),
    Case("whisper-bad-temperature", _j({"audio": _b64(WAV), "temperature": "warm"})),
    Case("whisper-temperature-overflows-float", _j({"audio": _b64(WAV), "temperature": 10**400}),
         why="float(10**400) raises OverflowError"),
    Case("whisper-url-file-scheme", _j({"url": "file:///etc/passwd"}), why="SSRF / local file read"),
    Case("whisper-url-metadata-ip", _j({"url": "http://169.254.169.254/latest/meta-data/"}),
         why="SSRF to the cloud metadata address"),
    Case("whisper-url-and-audio", _j({"url": "https://example.com/a.wav", "audio": _b64(WAV)}),
         why="exactly one source"),
    Case("whisper-multipart-no-file", b'--x\r\nContent-Disposition: form-data; name="response_format"\r\n\r\n'
                                      b"json\r\n--x--\r\n", "multipart/form-data; boundary=x",
         why="multipart upload without the file field"),
]

_SCHEMA = {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}


def _deep_schema(depth: int) -> dict:
    schema: dict = {"type": "string"}
    for _ in range(depth):
        schema = {"type": "object", "properties": {"x": schema}, "required": ["x"]}
    return schema


JSON_NODE: list[Case] = [
    Case("json-no-schema", _j({"prompt": "a name"}), why="schema (or schema_name) is required"),
    Case("json-no-prompt", _j({"schema": _SCHEMA})),
    Case("json-schema-not-object", _j({"schema": "a string", "prompt": "x"})),
    Case("json-schema-invalid-type", _j({"schema": {"type": "nonsense"}, "prompt": "x"}),
         why="not a valid JSON Schema"),
    Case("json-schema-too-deep", _j({"schema": _deep_schema(200), "prompt": "x"}),
         why="hostile schema: nesting depth bomb"),
    Case("json-schema-too-many-nodes",
         _j({"schema": {"type": "object", "properties": {f"f{i}": {"type": "string"} for i in range(20_000)}},
             "prompt": "x"}), why="hostile schema: size bomb"),
    Case("json-schema-remote-ref", _j({"schema": {"$ref": "http://169.254.169.254/schema.json"}, "prompt": "x"}),
         why="hostile schema: remote $ref must not be fetched"),
    Case("json-schema-dangling-ref", _j({"schema": {"type": "object", "properties": {
        "a": {"$ref": "#/$defs/missing"}}}, "prompt": "x"})),
    Case("json-max-tokens-zero", _j({"schema": _SCHEMA, "prompt": "x", "max_tokens": 0})),
    Case("json-max-tokens-huge", _j({"schema": _SCHEMA, "prompt": "x", "max_tokens": 10**9})),
    Case("json-both-prompt-and-messages", _j({"schema": _SCHEMA, "prompt": "x",
                                              "messages": [{"role": "user", "content": "y"}]})),
    Case("json-unknown-schema-name", _j({"schema_name": "no-such-schema", "prompt": "x"})),
]

TTS: list[Case] = [
    Case("tts-no-input", _j({"response_format": "wav"})),
    Case("tts-input-empty", _j({"input": ""})),
    Case("tts-input-number", _j({"input": 7})),
    Case("tts-huge-text", _j({"input": "Hello there. " * 200_000}), why="2.6 MB of text"),
    Case("tts-bad-format", _j({"input": "hi", "response_format": "flac9"})),
    Case("tts-speed-huge", _j({"input": "hi", "speed": 1000})),
    Case("tts-speed-string", _j({"input": "hi", "speed": "fast"})),
    Case("tts-speed-overflows-float", _j({"input": "hi", "speed": 10**400}),
         why="math.isfinite(10**400) raises OverflowError"),
    Case("tts-noise-overflows-float", _j({"input": "hi", "noise_scale": -10**400})),
    Case("tts-stream-string", _j({"input": "hi", "stream": "maybe"})),
    Case("tts-unknown-voice", _j({"input": "hi", "voice": "../../etc/passwd"}), why="path traversal as a voice"),
    Case("tts-control-chars-only", _j({"input": "\u0000\u0001\u0002\u200b\u200b\ufeff"}),
         why="nothing speakable"),
    Case("tts-unknown-field", _j({"input": "hi", "volume": 11})),
]

# The chain service, through POST /v1/chains/extract/run (body {"inputs": {...}}).
CHAIN: list[Case] = [
    Case("chain-no-inputs", _j({"text": "hi"}), why="inputs is required"),
    Case("chain-inputs-not-object", _j({"inputs": "hi"})),
    Case("chain-neither-text-nor-audio", _j({"inputs": {}})),
    Case("chain-text-and-audio", _j({"inputs": {"text": "hi", "audio": _b64(WAV)}})),
    Case("chain-audio-not-base64", _j({"inputs": {"audio": "!!!not base64!!!"}})),
    Case("chain-huge-text", _j({"inputs": {"text": "word " * 100_000}}), why="over the text limit"),
    Case("chain-hostile-schema", _j({"inputs": {"text": "hi", "schema": _deep_schema(200)}})),
    Case("chain-invalid-schema", _j({"inputs": {"text": "hi", "schema": {"type": "nonsense"}}})),
    Case("chain-unknown-field", _j({"inputs": {"text": "hi", "temperature_of_sun": 5}})),
    Case("chain-max-rounds-huge", _j({"inputs": {"text": "hi", "max_rounds": 10**9}})),
]

BY_NODE: dict[str, list[Case]] = {"llm": LLM, "whisper": WHISPER, "json": JSON_NODE, "tts": TTS, "chain": CHAIN}


def cases(node: str) -> list[Case]:
    return COMMON + BY_NODE[node]
