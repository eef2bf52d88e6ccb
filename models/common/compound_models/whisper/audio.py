"""Decode any audio PyAV/ffmpeg reads into 16 kHz mono float32, with size/duration limits.

Every failure is an InputError naming the problem (empty, not audio, unsupported codec,
truncated, too long), so the server answers 4xx and keeps serving.
"""
from __future__ import annotations

import io
import wave

import numpy as np

from compound_models.errors import InputError

SAMPLE_RATE = 16000


def decode_audio(data: bytes, *, max_seconds: float, field: str = "audio") -> np.ndarray:
    """Bytes of an audio file → float32 samples at 16 kHz mono in [-1, 1]."""
    import av

    if not data:
        raise InputError("audio is empty (0 bytes)", field=field)
    try:
        container = av.open(io.BytesIO(data), mode="r", metadata_errors="ignore")
    except av.error.FFmpegError as exc:
        raise InputError(f"not a decodable audio file ({_reason(exc)})", field=field) from exc
    with container:
        if not container.streams.audio:
            raise InputError("the file has no audio stream", field=field)
        stream = container.streams.audio[0]
        declared = _declared_seconds(container, stream, data)
        if declared is not None and declared > max_seconds:
            raise InputError(f"audio is {declared:.0f} s long; the limit is {max_seconds:.0f} s",
                             field=field, status_code=413)
        # "flt" planar-free mono at 16 kHz is what Whisper's feature extractor expects.
        resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
        parts: list[np.ndarray] = []
        total = 0
        max_samples = int(max_seconds * SAMPLE_RATE)
        try:
            for frame in container.decode(stream):
                for out in resampler.resample(frame):
                    parts.append(out.to_ndarray().reshape(-1))
                    total += parts[-1].shape[0]
                if total > max_samples:  # duration unknown up front (e.g. raw streams)
                    raise InputError(f"audio is longer than the limit of {max_seconds:.0f} s",
                                     field=field, status_code=413)
            for out in resampler.resample(None):
                parts.append(out.to_ndarray().reshape(-1))
        except av.error.DecoderNotFoundError as exc:
            raise InputError(f"unsupported audio codec ({_codec_name(stream)})", field=field) from exc
        except av.error.FFmpegError as exc:
            raise InputError(f"audio could not be decoded ({_reason(exc)})", field=field) from exc
    samples = np.concatenate(parts).astype(np.float32, copy=False) if parts else np.zeros(0, np.float32)
    if samples.size == 0:
        raise InputError("the file contains no audio samples (truncated or empty)", field=field)
    decoded = samples.size / SAMPLE_RATE
    if declared is not None and declared > 1.0 and decoded < 0.9 * declared - 0.5:
        raise InputError(f"audio is truncated: the header says {declared:.1f} s but only "
                         f"{decoded:.1f} s could be decoded", field=field)
    return samples


def _declared_seconds(container, stream, data: bytes) -> float | None:
    """Duration the file claims, when it states one (WAV header, MP3 Xing/Info, container)."""
    if data[:4] == b"RIFF" and data[8:12] == b"WAVE":
        # ffmpeg estimates WAV duration from the file size; the header's frame count is the
        # claim that exposes a truncated upload.
        try:
            with wave.open(io.BytesIO(data)) as w:
                return w.getnframes() / w.getframerate()
        except (wave.Error, EOFError, ZeroDivisionError):
            pass
    if stream.duration is not None and stream.time_base:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / 1_000_000
    return None


def _codec_name(stream) -> str:
    try:
        return stream.codec_context.name
    except Exception:  # no decoder: PyAV has no codec context to name
        return "no decoder available"


def _reason(exc: Exception) -> str:
    return getattr(exc, "strerror", None) or str(exc)
