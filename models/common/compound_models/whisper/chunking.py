"""Cut long audio at silences into chunks of at most 30 s (Whisper's window).

1. Silero VAD (bundled with faster-whisper) finds speech regions.
2. A region longer than the limit (no usable pause) is hard-split at its quietest 100 ms,
   searched in the second half of the window so no piece is tiny.
3. Adjacent regions are merged while the merged span stays within the limit; the pauses
   between merged regions stay inside the chunk, and chunks never overlap, so stitching
   needs no de-duplication: every sample of speech belongs to exactly one chunk.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SAMPLE_RATE = 16000


@dataclass(frozen=True)
class Chunk:
    start: int  # sample index in the full audio
    end: int

    @property
    def offset(self) -> float:
        return self.start / SAMPLE_RATE

    @property
    def duration(self) -> float:
        return (self.end - self.start) / SAMPLE_RATE


def speech_regions(audio: np.ndarray, *, min_silence_ms: int = 300, speech_pad_ms: int = 200,
                   threshold: float = 0.5) -> list[Chunk]:
    from faster_whisper.vad import VadOptions, get_speech_timestamps

    options = VadOptions(threshold=threshold, min_silence_duration_ms=min_silence_ms,
                         speech_pad_ms=speech_pad_ms)
    return [Chunk(int(r["start"]), int(r["end"])) for r in get_speech_timestamps(audio, options)]


def quietest_point(audio: np.ndarray, lo: int, hi: int, window: int = SAMPLE_RATE // 10) -> int:
    """Sample index in [lo, hi) at the centre of the lowest-energy `window`."""
    segment = audio[lo:hi].astype(np.float64)
    if segment.size <= window:
        return (lo + hi) // 2
    energy = np.convolve(segment * segment, np.ones(window), mode="valid")
    return lo + int(np.argmin(energy)) + window // 2


def split_long(region: Chunk, audio: np.ndarray, max_samples: int) -> list[Chunk]:
    pieces = []
    start = region.start
    while region.end - start > max_samples:
        cut = quietest_point(audio, start + max_samples // 2, start + max_samples)
        pieces.append(Chunk(start, cut))
        start = cut
    pieces.append(Chunk(start, region.end))
    return pieces


def merge(regions: list[Chunk], max_samples: int) -> list[Chunk]:
    chunks: list[Chunk] = []
    for region in regions:
        if chunks and region.end - chunks[-1].start <= max_samples:
            chunks[-1] = Chunk(chunks[-1].start, region.end)
        else:
            chunks.append(region)
    return chunks


def plan_chunks(audio: np.ndarray, *, max_seconds: float = 30.0, min_silence_ms: int = 300,
                speech_pad_ms: int = 200) -> list[Chunk]:
    """Non-overlapping chunks (sample ranges, ascending) covering all detected speech."""
    max_samples = int(max_seconds * SAMPLE_RATE)
    regions = speech_regions(audio, min_silence_ms=min_silence_ms, speech_pad_ms=speech_pad_ms)
    pieces = [p for r in regions for p in split_long(r, audio, max_samples)]
    return merge(pieces, max_samples)
