"""Whisper Truss model code in-process with the real bundled tiny.en (faster-whisper, int8).

Speech comes from tests/speech.py (bundled Piper voice, deterministic). The ≥3-minute
recording is transcribed once per session and every output format is rendered from it.
"""
from __future__ import annotations

import io
import re
import sys
from pathlib import Path

import jiwer
import pytest
import srt
import webvtt
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import speech  # noqa: E402

from compound_models.errors import InputError  # noqa: E402
from compound_models.whisper import formats  # noqa: E402
from compound_models.whisper.audio import decode_audio  # noqa: E402
from compound_models.whisper.pipeline import Transcriber  # noqa: E402
from compound_models.whisper.request import TranscriptionRequest  # noqa: E402
from compound_models.whisper.service import WhisperService  # noqa: E402
from compound_models.whisper.transcript import DecodeOptions  # noqa: E402

CONFIG = Path(__file__).resolve().parents[1] / "models" / "whisper" / "config.yaml"
SENTENCES = " ".join(speech.KNOWN_SENTENCES[:6])
LONG_SECONDS = 190


def normalize(text: str) -> str:
    return " ".join(re.sub(r"[^a-z0-9' ]", " ", text.lower()).split())


def wer(reference: str, hypothesis: str) -> float:
    return jiwer.wer(normalize(reference), normalize(hypothesis))


@pytest.fixture(scope="session")
def whisper_service() -> WhisperService:
    service = WhisperService.from_config(yaml.safe_load(CONFIG.read_text()))
    service.load()
    return service


@pytest.fixture(scope="session")
def long_audio():
    wav, reference = speech.long_recording(LONG_SECONDS, seed=5)
    return wav, reference


@pytest.fixture(scope="session")
def long_transcript(whisper_service, long_audio):
    audio = whisper_service.load_audio(TranscriptionRequest(audio=long_audio[0]))
    options = DecodeOptions(word_timestamps=True, beam_size=whisper_service.settings.beam_size)
    return whisper_service.transcriber.transcribe(audio, options, label="long test")


def test_wav_known_sentences_wer(whisper_service):
    wav = speech.synthesize_wav(SENTENCES)
    body = whisper_service.run(TranscriptionRequest(audio=wav))
    assert wer(SENTENCES, body["text"]) <= 0.15, body["text"]


def test_mp3_known_sentences_wer(whisper_service):
    mp3 = speech.to_mp3(speech.synthesize_wav(SENTENCES))
    assert mp3[:3] == b"ID3" or mp3[:2] == b"\xff\xfb"
    body = whisper_service.run(TranscriptionRequest(audio=mp3))
    assert wer(SENTENCES, body["text"]) <= 0.15, body["text"]


def test_long_audio_timestamps_monotonic_and_cover(long_transcript, long_audio):
    t = long_transcript
    duration = speech.wav_duration(long_audio[0])
    assert duration >= 180 and abs(t.duration - duration) < 0.1
    starts = [s.start for s in t.segments]
    assert starts == sorted(starts) and len(set(starts)) == len(starts)
    assert all(s.start < s.end for s in t.segments)
    assert all(a.end <= b.start for a, b in zip(t.segments, t.segments[1:]))
    # cover: speech starts right away in the recording and runs to its last pause
    assert t.segments[0].start < 2.0 and t.segments[-1].end > duration - 3.0
    assert max(b.start - a.end for a, b in zip(t.segments, t.segments[1:])) < 4.0
    words = t.words
    assert all(a.start <= b.start for a, b in zip(words, words[1:]))
    assert all(s.start <= w.start <= w.end <= s.end for s in t.segments for w in s.words)
    assert wer(long_audio[1], t.text) <= 0.15


def test_long_audio_no_words_duplicated_or_dropped_at_seams(whisper_service, long_transcript, long_audio):
    audio = decode_audio(long_audio[0], max_seconds=3600)
    chunks = whisper_service.transcriber.plan(audio)
    assert len(chunks) >= 6
    seams = [c.offset for c in chunks[1:]]
    reference, hypothesis = normalize(long_audio[1]).split(), [normalize(w.word) for w in long_transcript.words]
    hyp_times = [w.start for w in long_transcript.words if normalize(w.word)]
    hypothesis = [h for h in hypothesis if h]
    alignment = jiwer.process_words(" ".join(reference), " ".join(hypothesis))
    near_seam_errors = []
    for op in alignment.alignments[0]:
        if op.type in ("insert", "delete"):
            # time of the hypothesis word at (or just before) the edit
            i = min(max(op.hyp_start_idx - (op.type == "delete"), 0), len(hyp_times) - 1)
            if any(abs(hyp_times[i] - seam) < 1.5 for seam in seams):
                near_seam_errors.append((op.type, reference[op.ref_start_idx:op.ref_end_idx],
                                         hypothesis[op.hyp_start_idx:op.hyp_end_idx], hyp_times[i]))
    assert near_seam_errors == []


def test_long_audio_all_five_formats(long_transcript):
    t = long_transcript
    assert formats.render(t, "json") == {"text": t.text}
    assert formats.render(t, "text").strip() == t.text
    verbose = formats.render(t, "verbose_json", include_words=True)
    assert [s["start"] for s in verbose["segments"]] == [s.start for s in t.segments]
    assert len(verbose["words"]) == len(t.words) > 300
    subs = list(srt.parse(formats.render(t, "srt")))
    assert [round(s.start.total_seconds(), 3) for s in subs] == [s.start for s in t.segments]
    assert [s.content for s in subs] == [s.text for s in t.segments]
    captions = webvtt.from_buffer(io.StringIO(formats.render(t, "vtt"))).captions
    assert [(c.start, c.text) for c in captions] == [(formats._clock(s.start), s.text) for s in t.segments]


def test_text_srt_vtt_are_responses_with_media_types(whisper_service):
    wav = speech.synthesize_wav(speech.KNOWN_SENTENCES[3])
    for fmt, media in (("text", "text/plain"), ("srt", "text/plain"), ("vtt", "text/vtt")):
        response = whisper_service.run(TranscriptionRequest(audio=wav, response_format=fmt))
        assert response.media_type.startswith(media)
        assert "birch" in response.body.decode().lower()


def test_silence_returns_empty_text(whisper_service):
    body = whisper_service.run(TranscriptionRequest(audio=speech.silence_wav(5.0), response_format="verbose_json"))
    assert body["text"] == "" and body["segments"] == [] and body["duration"] == 5.0


def test_language_refused_for_english_only_model(whisper_service):
    with pytest.raises(InputError) as info:
        whisper_service.run(TranscriptionRequest(audio=speech.silence_wav(1.0), language="de"))
    assert info.value.field == "language"


def test_request_beam_size_overrides_the_deployment_default(whisper_service):
    assert whisper_service.settings.beam_size == 5  # config.yaml
    assert whisper_service.options(TranscriptionRequest(audio=b"")).beam_size == 5
    assert whisper_service.options(TranscriptionRequest(audio=b"", beam_size=1)).beam_size == 1
    wav = speech.synthesize_wav(speech.KNOWN_SENTENCES[0])
    greedy = whisper_service.run(TranscriptionRequest(audio=wav, beam_size=1))["text"]
    assert "quick brown fox" in greedy.lower()


def test_prompt_and_temperature_pass_through(whisper_service):
    # Whisper copies the prompt's style: an unpunctuated lower-case prompt gives such output.
    wav = speech.synthesize_wav(speech.KNOWN_SENTENCES[3])
    plain = whisper_service.run(TranscriptionRequest(audio=wav))["text"]
    styled = whisper_service.run(TranscriptionRequest(audio=wav, prompt="the birch canoe slid",
                                                      temperature=0.2))["text"]
    assert plain != plain.lower() and plain.endswith(".")
    assert styled == styled.lower() and not styled.endswith(".") and "birch" in styled


def test_stream_lines_emit_segments_in_order_then_done(whisper_service):
    import json

    wav, reference = speech.long_recording(50, seed=9)
    audio = decode_audio(wav, max_seconds=600)
    lines = [json.loads(x) for x in whisper_service.stream_lines(audio, TranscriptionRequest(audio=wav))]
    assert lines[-1]["type"] == "done" and all(x["type"] == "segment" for x in lines[:-1])
    starts = [x["start"] for x in lines[:-1]]
    assert starts == sorted(starts) and [x["id"] for x in lines[:-1]] == list(range(len(starts)))
    assert lines[-1]["text"] == " ".join(x["text"] for x in lines[:-1])
    assert wer(reference, lines[-1]["text"]) <= 0.15


@pytest.mark.parametrize("strategy", ["batched", "sequential"])
def test_other_strategies_give_a_monotonic_timeline(whisper_service, strategy):
    wav, reference = speech.long_recording(50, seed=9)
    audio = decode_audio(wav, max_seconds=600)
    transcriber = Transcriber(whisper_service.backend, strategy=strategy)
    t = transcriber.transcribe(audio, DecodeOptions(beam_size=1))
    assert all(a.end <= b.start for a, b in zip(t.segments, t.segments[1:]))
    assert t.segments[-1].end <= t.duration
    assert wer(reference, t.text) <= 0.25


def test_openai_whisper_backend_plumbing_random_weights():
    """openai-whisper's transcribe() behind our interface, on a tiny.en-shaped model with
    random weights (its checkpoints cannot be downloaded here): checks the plumbing and the
    output mapping, not the words."""
    torch = pytest.importorskip("torch")
    whisper_model = pytest.importorskip("whisper.model")
    from compound_models.whisper.backends import OpenAIWhisperBackend

    torch.manual_seed(0)
    dims = whisper_model.ModelDimensions(n_mels=80, n_audio_ctx=1500, n_audio_state=384,
                                         n_audio_head=6, n_audio_layer=1, n_vocab=51864,
                                         n_text_ctx=448, n_text_state=384, n_text_head=6,
                                         n_text_layer=1)
    model = whisper_model.Whisper(dims).eval()
    # Some of Whisper's parameters are allocated with torch.empty (e.g. the decoder's positional
    # embedding): uninitialized memory, occasionally NaN. Give every weight seeded values.
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.normal_(0.0, 0.02)
    backend = OpenAIWhisperBackend(model)
    assert backend.multilingual is False and backend.parallelism == 1
    wav, _ = speech.long_recording(40, seed=21)  # two chunks: exercises offsets and stitching
    audio = decode_audio(wav, max_seconds=600)
    transcriber = Transcriber(backend)
    chunks = transcriber.plan(audio)
    assert len(chunks) == 2
    t = transcriber.transcribe(audio, DecodeOptions(language="en", temperature=0.5, beam_size=1))
    assert t.language == "en" and t.duration == pytest.approx(len(audio) / 16000, abs=1e-3)
    for s in t.segments:
        assert isinstance(s.text, str) and s.text == s.text.strip() and s.text
        assert any(c.offset <= s.start <= s.end <= c.offset + c.duration + 1e-3 for c in chunks)
    assert all(a.end <= b.start for a, b in zip(t.segments, t.segments[1:]))
    assert formats.render(t, "json") == {"text": t.text}
