"""16-bit mono PCM -> the bytes of a response format, incrementally.

Every encoder is incremental (`start`, `encode` per sentence, `finish`) so the same
code serves whole and streamed responses:

- `wav`: RIFF header + PCM. Streamed, the total length is unknown when the header is
  sent, so the RIFF and data chunk sizes are 0xFFFFFFFF ("as long as the stream"),
  which ffmpeg, browsers, sox and Python's soundfile read; whole responses get the
  exact sizes.
- `pcm`: raw signed 16-bit little-endian samples, no header (rate/channels in the
  X-Sample-Rate / X-Channels response headers).
- `mp3`, `opus` (Ogg), `aac` (ADTS), `flac`: PyAV (libav*) encoders, muxed into a
  non-seekable sink drained after every sentence, so the frames of a sentence leave
  as soon as that sentence is encoded (an encoder keeps a few ms of look-ahead, which
  leaves with the next sentence or at the end).
"""
from __future__ import annotations

import io
import struct
from dataclasses import dataclass
from typing import Optional

import numpy as np

STREAMING_SIZE = 0xFFFFFFFF  # RIFF/data size of a WAV whose length is unknown


@dataclass(frozen=True)
class AudioFormat:
    name: str
    media_type: str
    codec: Optional[str] = None  # PyAV encoder; None for wav/pcm
    container: Optional[str] = None  # PyAV muxer
    bit_rate: Optional[int] = None
    fixed_rate: Optional[int] = None  # the rate the format is always encoded at
    mux_options: tuple = ()  # muxer options, (name, value) pairs


FORMATS: dict[str, AudioFormat] = {
    "wav": AudioFormat("wav", "audio/wav"),
    "pcm": AudioFormat("pcm", "audio/pcm"),
    "mp3": AudioFormat("mp3", "audio/mpeg", codec="libmp3lame", container="mp3", bit_rate=64_000),
    # Ogg Opus is decoded at 48 kHz by every player; encode at that rate.
    # page_duration (µs): close an Ogg page every 20 ms of audio instead of every second,
    # so a sentence's packets are not held back waiting for a full page.
    "opus": AudioFormat("opus", "audio/ogg", codec="libopus", container="ogg", bit_rate=32_000,
                        fixed_rate=48_000, mux_options=(("page_duration", "20000"),)),
    "aac": AudioFormat("aac", "audio/aac", codec="aac", container="adts", bit_rate=64_000),
    "flac": AudioFormat("flac", "audio/flac", codec="flac", container="flac"),
}


def wav_header(sample_rate: int, channels: int = 1, data_bytes: Optional[int] = None) -> bytes:
    """44-byte PCM s16le WAV header; `data_bytes=None` writes the streaming sizes."""
    block_align = channels * 2
    if data_bytes is None:
        riff_size = data_size = STREAMING_SIZE
    else:
        riff_size, data_size = 36 + data_bytes, data_bytes
    return (
        b"RIFF" + struct.pack("<I", riff_size) + b"WAVE"
        + b"fmt " + struct.pack("<IHHIIHH", 16, 1, channels, sample_rate,
                                sample_rate * block_align, block_align, 16)
        + b"data" + struct.pack("<I", data_size)
    )


class Encoder:
    """Base: raw PCM passthrough (`pcm`)."""

    def __init__(self, fmt: AudioFormat, sample_rate: int, channels: int = 1):
        self.format = fmt
        self.input_rate = sample_rate
        self.channels = channels

    @property
    def output_rate(self) -> int:
        return self.input_rate

    def start(self) -> bytes:
        return b""

    def encode(self, pcm: np.ndarray) -> bytes:
        return _s16le(pcm)

    def finish(self) -> bytes:
        return b""


class WavEncoder(Encoder):
    def __init__(self, fmt: AudioFormat, sample_rate: int, channels: int = 1,
                 total_samples: Optional[int] = None):
        super().__init__(fmt, sample_rate, channels)
        self.total_samples = total_samples

    def start(self) -> bytes:
        data_bytes = None if self.total_samples is None else self.total_samples * 2 * self.channels
        return wav_header(self.input_rate, self.channels, data_bytes)


class _Sink(io.RawIOBase):
    """Non-seekable write-only file collecting what the muxer writes until drained."""

    def __init__(self):
        self._buffer = bytearray()

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        self._buffer += data
        return len(data)

    def drain(self) -> bytes:
        out = bytes(self._buffer)
        self._buffer.clear()
        return out


class PyAVEncoder(Encoder):
    def __init__(self, fmt: AudioFormat, sample_rate: int, channels: int = 1):
        super().__init__(fmt, sample_rate, channels)
        import av  # imported lazily: wav/pcm responses never need libav

        self._av = av
        self._rate = output_rate(fmt.name, sample_rate)
        self._sink = _Sink()
        # flush_packets: hand every muxed packet to the sink at once instead of buffering.
        self._container = av.open(self._sink, "w", format=fmt.container,
                                  options={"flush_packets": "1", **dict(fmt.mux_options)})
        layout = "mono" if channels == 1 else "stereo"
        self._stream = self._container.add_stream(fmt.codec, rate=self._rate, layout=layout)
        if fmt.bit_rate:
            self._stream.bit_rate = fmt.bit_rate
        self._layout = layout
        self._closed = False

    @property
    def output_rate(self) -> int:
        return self._rate

    def encode(self, pcm: np.ndarray) -> bytes:
        samples = np.ascontiguousarray(np.asarray(pcm, dtype=np.int16).reshape(1, -1))
        if samples.size == 0:
            return b""
        frame = self._av.AudioFrame.from_ndarray(samples, format="s16", layout=self._layout)
        frame.sample_rate = self.input_rate
        # The stream's encoder resamples (rate, sample format) and re-frames to the
        # codec's frame size itself.
        for packet in self._stream.encode(frame):
            self._container.mux(packet)
        return self._sink.drain()

    def finish(self) -> bytes:
        if self._closed:
            return b""
        for packet in self._stream.encode(None):
            self._container.mux(packet)
        self._container.close()
        self._closed = True
        return self._sink.drain()


def output_rate(format_name: str, sample_rate: int) -> int:
    """The sample rate a response in this format carries for audio made at `sample_rate`."""
    fmt = FORMATS[format_name]
    if fmt.codec is None:
        return sample_rate
    if fmt.fixed_rate:
        return fmt.fixed_rate
    import av

    return _supported_rate(sample_rate, av.codec.Codec(fmt.codec, "w").audio_rates)


def _supported_rate(rate: int, supported) -> int:
    """`rate` if the codec takes it, else the smallest supported rate above it (or the highest)."""
    if not supported or rate in supported:
        return rate
    higher = sorted(r for r in supported if r >= rate)
    return higher[0] if higher else max(supported)


def _s16le(pcm: np.ndarray) -> bytes:
    return np.asarray(pcm, dtype="<i2").tobytes()


def make_encoder(format_name: str, sample_rate: int, channels: int = 1,
                 total_samples: Optional[int] = None) -> Encoder:
    """Encoder for a name of FORMATS; for `wav`, `total_samples` (if known) sizes the header."""
    fmt = FORMATS[format_name]
    if fmt.name == "wav":
        return WavEncoder(fmt, sample_rate, channels, total_samples)
    if fmt.codec is None:
        return Encoder(fmt, sample_rate, channels)
    return PyAVEncoder(fmt, sample_rate, channels)
