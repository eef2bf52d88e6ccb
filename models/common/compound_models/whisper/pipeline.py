"""Long-audio transcription: cut at silences, transcribe chunks in parallel, stitch in order.

Strategies (settings.strategy):
- "threads" (default): a thread pool of `backend.parallelism` workers over one model.
- "batched": faster-whisper's BatchedInferencePipeline over the same chunks.
- "sequential": plain faster-whisper `transcribe()` over the whole file (baseline).
`compound bench whisper` measures them against each other.
"""
from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Iterator, Optional

import numpy as np

from compound_models.whisper.chunking import SAMPLE_RATE, Chunk, plan_chunks
from compound_models.whisper.transcript import (ChunkResult, DecodeOptions, Segment, Stitcher,
                                                Transcript)

log = logging.getLogger("compound.whisper")


class Progress:
    """Logs "n/N chunks (p%)" as chunks finish, from whichever worker thread finishes them."""

    def __init__(self, chunks: list[Chunk], label: str):
        self.total_s = sum(c.duration for c in chunks) or 1.0
        self.count, self.n, self.done_s = 0, len(chunks), 0.0
        self.label, self.started = label, time.monotonic()
        self._lock = threading.Lock()

    def chunk_done(self, chunk: Chunk) -> None:
        with self._lock:
            self.count += 1
            self.done_s += chunk.duration
            pct = 100.0 * self.done_s / self.total_s
            log.info("whisper %s: %d/%d chunks, %.0f%% of speech done (%.1f s elapsed)",
                     self.label, self.count, self.n, pct, time.monotonic() - self.started)


class Transcriber:
    def __init__(self, backend, *, strategy: str = "threads", chunk_seconds: float = 30.0,
                 min_silence_ms: int = 300):
        self.backend = backend
        self.strategy = strategy
        self.chunk_seconds = chunk_seconds
        self.min_silence_ms = min_silence_ms
        self._pool = ThreadPoolExecutor(max_workers=backend.parallelism,
                                        thread_name_prefix="whisper-chunk")

    def plan(self, audio: np.ndarray) -> list[Chunk]:
        return plan_chunks(audio, max_seconds=self.chunk_seconds, min_silence_ms=self.min_silence_ms)

    def transcribe(self, audio: np.ndarray, options: DecodeOptions, label: str = "") -> Transcript:
        stitcher = Stitcher()
        for _ in self.stream(audio, options, stitcher, label=label):
            pass
        return stitcher.finish(len(audio) / SAMPLE_RATE)

    def stream(self, audio: np.ndarray, options: DecodeOptions, stitcher: Optional[Stitcher] = None,
               label: str = "") -> Iterator[Segment]:
        """Yield stitched (absolute-time) segments in order as their chunks finish."""
        stitcher = stitcher or Stitcher()
        duration = len(audio) / SAMPLE_RATE
        if self.strategy == "sequential":
            whole = Chunk(0, len(audio))
            log.info("whisper %s: %.1f s of audio, sequential", label, duration)
            yield from stitcher.add(whole, self.backend.transcribe_sequential(audio, options))
            return
        chunks = self.plan(audio)
        log.info("whisper %s: %.1f s of audio → %d chunks of speech (%s)", label, duration,
                 len(chunks), self.strategy)
        progress = Progress(chunks, label)
        for index, result in self._results(audio, chunks, options):
            progress.chunk_done(chunks[index])
            yield from stitcher.add(chunks[index], result)

    def _results(self, audio: np.ndarray, chunks: list[Chunk],
                 options: DecodeOptions) -> Iterator[tuple[int, ChunkResult]]:
        if self.strategy == "batched":
            yield from self.backend.transcribe_batched(audio, chunks, options)
            return
        futures: list[Future] = [
            self._pool.submit(self.backend.transcribe_chunk, audio[c.start:c.end], options)
            for c in chunks
        ]
        try:
            for index, future in enumerate(futures):  # in order, so the stitch is in order
                yield index, future.result()
        finally:  # client gone / generator closed: drop chunks not started yet
            for future in futures:
                future.cancel()

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
