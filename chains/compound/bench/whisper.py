"""Whisper suite: long-audio transcription, ours (cut at silences, chunks in parallel,
stitched) vs plain sequential faster-whisper `transcribe()`, same weights, same run.

Input: a 10-minute recording synthesized from seeded known text with the bundled Piper voice
(tests/speech.py; cached under <out_dir>/speech-cache), so WER is computable (jiwer).
Model: the bundled Whisper tiny.en, CTranslate2 int8, on 2 CPU threads in every variant:
- reference: `WhisperModel(cpu_threads=2).transcribe(audio)` (defaults, VAD off, beam 5)
- ours-threads: our chunks, 2 chunks at once on one WhisperModel(num_workers=2, 1 thread each)
- ours-batched: our chunks through faster-whisper's BatchedInferencePipeline (2 threads)
- chunks-1-worker: our chunks one at a time (2 threads) — separates chunking from parallelism
- ours-threads-2x1-greedy: ours-threads with beam 1 instead of 5 (a settings trade-off)
The machine's load average is recorded: other processes on the 2 cores erase the gain of
running 2 chunks at once, so compare numbers from runs on an otherwise idle machine.
"""
from __future__ import annotations

import importlib.util
import os
import re
import time
from pathlib import Path

from compound.bench import report
from compound.paths import REPO_ROOT

SECONDS = 600
SEED = 42
THREADS = 2


def _speech_module(cache_dir: Path):
    os.environ.setdefault("COMPOUND_SPEECH_CACHE", str(cache_dir))
    spec = importlib.util.spec_from_file_location("speech", REPO_ROOT / "tests" / "speech.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _normalize(text: str) -> str:
    return " ".join(re.sub(r"[^a-z0-9' ]", " ", text.lower()).split())


def run(out_dir: Path) -> dict:
    import jiwer
    from faster_whisper import WhisperModel

    from compound_models.bundled import whisper_tiny_en_ct2
    from compound_models.whisper.audio import decode_audio
    from compound_models.whisper.backends import FasterWhisperBackend
    from compound_models.whisper.pipeline import Transcriber
    from compound_models.whisper.transcript import DecodeOptions, Stitcher
    from compound_models.whisper.chunking import Chunk
    from compound_models.whisper.backends import _segment

    out_dir.mkdir(parents=True, exist_ok=True)
    speech = _speech_module(out_dir / "speech-cache")
    load_before = os.getloadavg()
    started = time.monotonic()
    wav, reference = speech.long_recording(SECONDS, seed=SEED)
    synth_s = time.monotonic() - started
    audio = decode_audio(wav, max_seconds=3600)
    duration = len(audio) / 16000
    model_path = str(whisper_tiny_en_ct2())
    options = DecodeOptions(beam_size=5)
    results: dict[str, dict] = {}

    def record(name: str, fn) -> None:
        t0 = time.monotonic()
        transcript = fn()
        wall = time.monotonic() - t0
        wer = jiwer.wer(_normalize(reference), _normalize(transcript.text))
        results[name] = {"wall_s": round(wall, 2), "rtf": round(wall / duration, 4),
                         "wer": round(wer, 4), "segments": len(transcript.segments)}
        print(f"  {name}: {wall:.1f}s, WER {wer:.3f}", flush=True)

    # Reference: plain sequential transcribe() over the whole file.
    reference_model = WhisperModel(model_path, device="cpu", compute_type="int8", cpu_threads=THREADS)

    def sequential():
        segments, info = reference_model.transcribe(audio, beam_size=5, vad_filter=False)
        stitcher = Stitcher()
        stitcher.add(Chunk(0, len(audio)), _result(segments, info))
        return stitcher.finish(duration)

    def _result(segments, info):
        from compound_models.whisper.transcript import ChunkResult

        return ChunkResult([_segment(s) for s in segments], info.language)

    record("reference-sequential", sequential)

    two_workers = FasterWhisperBackend(model_path, cpu_threads=THREADS, workers=2)
    threads = Transcriber(two_workers, strategy="threads")
    chunks = threads.plan(audio)
    record("ours-threads-2x1", lambda: threads.transcribe(audio, options, label="bench"))
    # Same pipeline with greedy decoding (beam 1): a settings trade-off, reported separately.
    record("ours-threads-2x1-greedy", lambda: threads.transcribe(audio, DecodeOptions(beam_size=1)))

    one_worker = FasterWhisperBackend(model_path, cpu_threads=THREADS, workers=1)
    record("ours-batched", lambda: Transcriber(one_worker, strategy="batched").transcribe(audio, options))
    record("chunks-1-worker", lambda: Transcriber(one_worker, strategy="threads").transcribe(audio, options))

    ref = results["reference-sequential"]
    for name, r in results.items():
        r["speedup_vs_reference"] = round(ref["wall_s"] / r["wall_s"], 3)
        r["wer_delta_points"] = round(100 * (r["wer"] - ref["wer"]), 2)
    best = results["ours-threads-2x1"]
    summary = {
        "audio_seconds": round(duration, 1), "chunks": len(chunks), "threads": THREADS,
        "synthesis_s": round(synth_s, 1), "model": "whisper tiny.en (bundled, CTranslate2 int8)",
        "rtf_ours_2_threads": best["rtf"], "speedup_ours_vs_sequential": best["speedup_vs_reference"],
        "wer_delta_points_ours_vs_sequential": best["wer_delta_points"],
        "load_average_before_after": [list(load_before), list(os.getloadavg())],
        "target": "speedup >= 2x with WER within 1 point",
        "target_met": best["speedup_vs_reference"] >= 2 and best["wer_delta_points"] <= 1.0,
        "variants": results,
    }
    names = list(results)
    report.bar_plot(out_dir / "whisper_wall_seconds.png",
                    f"Transcribe {duration / 60:.0f} min on {THREADS} CPU threads (tiny.en int8)",
                    names, [results[n]["wall_s"] for n in names], "seconds (lower is better)")
    report.bar_plot(out_dir / "whisper_wer.png", "Word error rate vs known text", names,
                    [100 * results[n]["wer"] for n in names], "WER %", reference_line=100 * ref["wer"])
    report.print_table(
        "whisper: long audio, ours vs sequential transcribe()",
        ["variant", "wall s", "RTF", "WER %", "speedup (ref/ours)", "WER Δ points"],
        [[n, r["wall_s"], r["rtf"], 100 * r["wer"], r["speedup_vs_reference"], r["wer_delta_points"]]
         for n, r in results.items()])
    report.write_results(out_dir, "whisper", summary)
    return summary
