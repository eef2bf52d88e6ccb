"""Transcript data types and stitching of per-chunk results into one timeline.

Backends return segments with times relative to their chunk; `Stitcher` adds each chunk's
offset, clamps times into the chunk (a decoder can emit a timestamp past the audio it was
given) and keeps the timeline monotonic. Chunks never overlap (see chunking.py), so each
word is transcribed exactly once and nothing needs de-duplication at the seams.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from compound_models.whisper.chunking import Chunk


@dataclass
class Word:
    start: float
    end: float
    word: str
    probability: Optional[float] = None


@dataclass
class Segment:
    start: float
    end: float
    text: str
    words: list[Word] = field(default_factory=list)
    avg_logprob: Optional[float] = None
    no_speech_prob: Optional[float] = None


@dataclass
class ChunkResult:
    segments: list[Segment]
    language: Optional[str] = None


@dataclass
class DecodeOptions:
    language: Optional[str] = None
    prompt: Optional[str] = None
    temperature: float = 0.0
    word_timestamps: bool = False
    beam_size: int = 5

    @property
    def temperatures(self) -> tuple[float, ...]:
        # OpenAI semantics: 0 means "start greedy, raise the temperature when decoding fails"
        # (Whisper's fallback schedule); any other value is used as given.
        if self.temperature == 0:
            return (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
        return (self.temperature,)


@dataclass
class Transcript:
    text: str
    language: Optional[str]
    duration: float
    segments: list[Segment]

    @property
    def words(self) -> list[Word]:
        return [w for s in self.segments for w in s.words]


class Stitcher:
    """Feed chunk results in chunk order; get absolute, monotonic segments back."""

    def __init__(self) -> None:
        self.segments: list[Segment] = []
        self.language: Optional[str] = None
        self._last_end = 0.0
        self._last_word_end = 0.0

    def add(self, chunk: Chunk, result: ChunkResult) -> list[Segment]:
        if self.language is None and result.language:
            self.language = result.language
        added = []
        for seg in result.segments:
            text = seg.text.strip()
            if not text:
                continue
            start = max(self._place(seg.start, chunk), self._last_end)
            end = max(self._place(seg.end, chunk), start)
            words = []
            for w in seg.words:
                w_start = min(max(self._place(w.start, chunk), start, self._last_word_end), end)
                w_end = min(max(self._place(w.end, chunk), w_start), end)
                words.append(Word(round(w_start, 3), round(w_end, 3), w.word, w.probability))
                self._last_word_end = w_end
            out = Segment(round(start, 3), round(end, 3), text, words, seg.avg_logprob,
                          seg.no_speech_prob)
            self._last_end = end
            self.segments.append(out)
            added.append(out)
        return added

    @staticmethod
    def _place(t: float, chunk: Chunk) -> float:
        return chunk.offset + min(max(float(t), 0.0), chunk.duration)

    def finish(self, duration: float) -> Transcript:
        return Transcript(text=" ".join(s.text for s in self.segments), language=self.language,
                          duration=round(duration, 3), segments=self.segments)
