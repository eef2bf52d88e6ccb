"""Known speech for tests and benchmarks, synthesized offline with the bundled Piper voice.

Small API (other test modules and benches import it as `tests.speech` or `speech`):

- `synthesize_wav(text) -> bytes`: 16-bit mono WAV (22.05 kHz) of `text`, deterministic.
- `to_mp3(wav_bytes) -> bytes`: the same audio encoded to MP3 with PyAV.
- `long_recording(seconds, seed=0) -> (wav_bytes, reference_text)`: at least `seconds` of
  seeded sentences separated by pauses of varied length, with the exact text spoken.
- `wav_duration(wav_bytes) -> float` seconds.
- `KNOWN_SENTENCES`: the sentence bank everything above draws from.

Determinism: Piper's generator and duration noise are switched off (noise scales 0), so the
same text always gives the same samples. Results are cached in memory and on disk
(`$COMPOUND_SPEECH_CACHE`, default `<tmp>/compound-speech-cache`), keyed by text, voice and
settings, so a long recording is synthesized once per machine.
"""
from __future__ import annotations

import functools
import hashlib
import io
import os
import random
import tempfile
import wave
from pathlib import Path

import numpy as np

KNOWN_SENTENCES = (
    "The quick brown fox jumps over the lazy dog.",
    "It was a bright cold day in April, and the birds were singing in the trees.",
    "Please call Stella and ask her to bring these things with her from the store.",
    "The birch canoe slid on the smooth planks.",
    "Glue the sheet to the dark blue background.",
    "It is easy to tell the depth of a well.",
    "These days a chicken leg is a rare dish.",
    "Rice is often served in round bowls.",
    "The juice of lemons makes fine punch.",
    "The box was thrown beside the parked truck.",
    "Four hours of steady work faced us.",
    "A large size in stockings is hard to sell.",
    "The boy was there when the sun rose.",
    "A rod is used to catch pink salmon.",
    "The source of the huge river is the clear spring.",
    "Kick the ball straight and follow through.",
    "Help the woman get back to her feet.",
    "A pot of tea helps to pass the evening.",
    "Smoky fires lack flame and heat.",
    "The soft cushion broke the man's fall.",
    "The salt breeze came across from the sea.",
    "The girl at the booth sold fifty bonds.",
    "The small pup gnawed a hole in the sock.",
    "The fish twisted and turned on the bent hook.",
    "Press the pants and sew a button on the vest.",
    "The swan dive was far short of perfect.",
    "The beauty of the view stunned the young boy.",
    "Two blue fish swam in the tank.",
    "Her purse was full of useless trash.",
    "The colt reared and threw the tall rider.",
    "It snowed, rained, and hailed the same morning.",
    "Read verse out loud for pleasure.",
    "Hoist the load to your left shoulder.",
    "Take the winding path to reach the lake.",
    "Note closely the size of the gas tank.",
    "Wipe the grease off his dirty face.",
    "Mend the coat before you go out.",
    "The wrist was badly strained and hung limp.",
    "The stray cat gave birth to kittens.",
    "The young girl gave no clear response.",
    "The meal was cooked before the bell rang.",
    "What joy there is in living.",
    "A king ruled the state in the early days.",
    "The ship was torn apart on the sharp reef.",
    "Sickness kept him home the third week.",
    "The wide road shimmered in the hot sun.",
    "The lazy cow lay in the cool grass.",
    "Lift the square stone over the fence.",
    "The rope will bind the seven books at once.",
    "Hop over the fence and plunge in.",
    "The friendly gang left the drug store.",
    "Mesh wire keeps chicks inside.",
    "The frosty air passed through the coat.",
    "The crooked maze failed to fool the mouse.",
    "Adding fast leads to wrong sums.",
    "The show was a flop from the very start.",
    "A saw is a tool used for making boards.",
    "The wagon moved on well oiled wheels.",
    "March the soldiers past the next hill.",
    "A cup of sugar makes sweet fudge.",
)

_SETTINGS = "piper-joe-medium/noise0/v1"


@functools.lru_cache(maxsize=1)
def _voice():
    from piper import PiperVoice

    from compound_models.bundled import piper_joe_voice

    return PiperVoice.load(str(piper_joe_voice()))


def _cache_dir() -> Path:
    path = Path(os.environ.get("COMPOUND_SPEECH_CACHE",
                               Path(tempfile.gettempdir()) / "compound-speech-cache"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def _cached(key: str, make) -> bytes:
    digest = hashlib.sha256(f"{_SETTINGS}\n{key}".encode()).hexdigest()[:32]
    path = _cache_dir() / f"{digest}.bin"
    if path.exists():
        return path.read_bytes()
    data = make()
    tmp = path.with_suffix(f".{os.getpid()}.tmp")  # atomic: parallel test sessions share the cache
    tmp.write_bytes(data)
    tmp.replace(path)
    return data


def _samples(text: str) -> np.ndarray:
    from piper import SynthesisConfig

    config = SynthesisConfig(noise_scale=0.0, noise_w_scale=0.0)  # no noise: deterministic
    chunks = [c.audio_int16_array for c in _voice().synthesize(text, syn_config=config)]
    return np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.int16)


def sample_rate() -> int:
    return int(_voice().config.sample_rate)


def _wav(samples: np.ndarray, rate: int) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(samples.astype(np.int16).tobytes())
    return buf.getvalue()


@functools.lru_cache(maxsize=64)
def synthesize_wav(text: str) -> bytes:
    """16-bit mono WAV of `text` spoken by the bundled Piper voice (deterministic, cached)."""
    return _cached(f"wav\n{text}", lambda: _wav(_samples(text), sample_rate()))


def wav_duration(wav_bytes: bytes) -> float:
    with wave.open(io.BytesIO(wav_bytes)) as w:
        return w.getnframes() / w.getframerate()


def silence_wav(seconds: float, rate: int = 16000) -> bytes:
    """Digital silence as a 16-bit mono WAV."""
    return _wav(np.zeros(int(seconds * rate), dtype=np.int16), rate)


@functools.lru_cache(maxsize=16)
def to_mp3(wav_bytes: bytes, bitrate: int = 64000) -> bytes:
    """Encode a 16-bit mono WAV to MP3 with PyAV (libmp3lame)."""
    import av

    with wave.open(io.BytesIO(wav_bytes)) as w:
        rate = w.getframerate()
        samples = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16)
    out = io.BytesIO()
    with av.open(out, "w", format="mp3") as container:
        stream = container.add_stream("mp3", rate=rate)
        stream.bit_rate = bitrate
        stream.layout = "mono"
        frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = rate
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return out.getvalue()


def long_recording(seconds: float, seed: int = 0) -> tuple[bytes, str]:
    """At least `seconds` of speech: seeded sentences with 0.3-1.5 s pauses between them.

    Returns (16-bit mono WAV bytes, the reference text spoken). The sentence order and the
    pause lengths come from `random.Random(seed)`, so a (seconds, seed) pair is reproducible.
    """
    rng = random.Random(seed)
    rate = sample_rate()
    # Plan the whole recording first, so the cache key is the exact content.
    order: list[str] = []
    pauses: list[float] = []
    planned = 0.0
    bank = list(KNOWN_SENTENCES)
    while planned < seconds:
        rng.shuffle(bank)
        for sentence in bank:
            order.append(sentence)
            pauses.append(round(rng.uniform(0.3, 1.5), 2))
            # ~0.068 s per character for this voice; refined below with real durations.
            planned += 0.068 * len(sentence) + pauses[-1]
            if planned >= seconds:
                break
    key = f"long\n{seconds}\n{seed}\n" + "\n".join(f"{p}|{s}" for s, p in zip(order, pauses))

    def make() -> bytes:
        parts: list[np.ndarray] = []
        total = 0
        extra = list(KNOWN_SENTENCES)
        i = 0
        while i < len(order) or total < seconds * rate:
            if i >= len(order):  # the estimate fell short: keep going with more sentences
                order.append(extra[i % len(extra)])
                pauses.append(0.8)
            speech = np.frombuffer(_wav_frames(synthesize_wav(order[i])), dtype=np.int16)
            pause = np.zeros(int(pauses[i] * rate), dtype=np.int16)
            parts += [speech, pause]
            total += len(speech) + len(pause)
            i += 1
        text = " ".join(order)
        return text.encode() + b"\0" + _wav(np.concatenate(parts), rate)

    blob = _cached(key, make)
    text, _, wav_bytes = blob.partition(b"\0")
    return wav_bytes, text.decode()


def _wav_frames(wav_bytes: bytes) -> bytes:
    with wave.open(io.BytesIO(wav_bytes)) as w:
        return w.readframes(w.getnframes())
