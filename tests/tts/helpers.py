"""Shared by the TTS tests: transcription with the bundled whisper tiny.en, WER, audio parsing."""
from __future__ import annotations

import functools
import io
import re
import struct

import av
import jiwer
import numpy as np


@functools.lru_cache(maxsize=1)
def whisper_model():
    """faster-whisper tiny.en (bundled weights), loaded once per test session."""
    from faster_whisper import WhisperModel

    from compound_models import bundled

    return WhisperModel(str(bundled.whisper_tiny_en_ct2()), device="cpu", compute_type="int8")


def transcribe(audio_bytes: bytes) -> str:
    segments, _ = whisper_model().transcribe(io.BytesIO(audio_bytes), beam_size=1, language="en")
    return " ".join(s.text.strip() for s in segments)


def normalize_words(text: str) -> str:
    """Numbers as words (whisper writes digits), lowercase, punctuation dropped, hyphens
    split: the simple normalization WER uses on both sides."""
    from compound_models.tts.normalize import expand_numbers

    text = expand_numbers(text).lower().replace("-", " ")
    text = re.sub(r"[^a-z0-9' ]+", " ", text)
    return re.sub(r"\s+", " ", text).strip()


def wer(reference: str, hypothesis: str) -> float:
    return jiwer.wer(normalize_words(reference), normalize_words(hypothesis))


def decode_audio(data: bytes) -> tuple[int, np.ndarray]:
    """(sample rate, mono float samples) of any container/codec libav reads."""
    with av.open(io.BytesIO(data)) as container:
        frames = [f for f in container.decode(audio=0)]
    rate = frames[0].sample_rate
    samples = np.concatenate([f.to_ndarray().reshape(-1) for f in frames])
    return rate, samples


def parse_wav_header(data: bytes) -> dict:
    """The fields of a canonical 44-byte PCM WAV header."""
    assert data[:4] == b"RIFF" and data[8:12] == b"WAVE" and data[12:16] == b"fmt "
    riff_size, = struct.unpack("<I", data[4:8])
    _, fmt, channels, rate, byte_rate, align, bits = struct.unpack("<IHHIIHH", data[16:36])
    assert data[36:40] == b"data"
    data_size, = struct.unpack("<I", data[40:44])
    return {"riff_size": riff_size, "format": fmt, "channels": channels, "sample_rate": rate,
            "byte_rate": byte_rate, "block_align": align, "bits": bits, "data_size": data_size}
