"""The TTS node: settings from config.yaml, request -> validated job -> audio bytes.

`TTSService.prepare(body)` does all validation (raising InputError) before a single
byte is produced, so a bad request is a 4xx even when streaming was asked for. The
returned `SpeechJob` then renders the whole response or streams it unit by unit.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping, Optional

from compound_models.errors import InputError
from compound_models.tts import encode
from compound_models.tts.normalize import clean_text, is_speakable, normalize_sentence
from compound_models.tts.request import SpeechRequest, parse_speech_request
from compound_models.tts.sentences import streaming_units
from compound_models.tts.synth import SynthesisProgress, synthesis_config, synthesize_units
from compound_models.tts.voices import Voice, VoiceRegistry

DEFAULT_VOICES = {"joe": "bundled:en_US-joe-medium"}


@dataclass(frozen=True)
class TTSSettings:
    voices: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_VOICES))
    default_voice: Optional[str] = None  # None: the first voice listed
    max_input_chars: int = 4096
    default_response_format: str = "wav"
    sentence_silence_s: float = 0.15
    first_chunk_max_words: int = 6
    onnx_threads: int = 0  # ONNX Runtime intra-op threads per voice; 0: its default (all cores)
    # Names clients send that are not configured voices (OpenAI's) -> a configured voice.
    voice_aliases: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_model_metadata(cls, metadata: Optional[Mapping[str, Any]]) -> "TTSSettings":
        tts = dict((metadata or {}).get("tts") or {})
        known = set(cls.__dataclass_fields__)
        unknown = set(tts) - known
        if unknown:
            raise ValueError(f"unknown model_metadata.tts setting(s): {', '.join(sorted(unknown))}")
        settings = cls(**tts)
        if settings.default_response_format not in encode.FORMATS:
            raise ValueError(f"default_response_format must be one of {', '.join(encode.FORMATS)}")
        return settings


@dataclass
class SpeechJob:
    request: SpeechRequest
    voice: Voice
    units: list[str]
    sentence_silence_s: float
    speaker_id: Optional[int] = None
    progress: SynthesisProgress = field(default_factory=SynthesisProgress)

    @property
    def format(self) -> encode.AudioFormat:
        return encode.FORMATS[self.request.response_format]

    @property
    def media_type(self) -> str:
        return self.format.media_type

    @property
    def sample_rate(self) -> int:
        return encode.output_rate(self.request.response_format, self.voice.sample_rate)

    @property
    def headers(self) -> dict[str, str]:
        name = self.request.response_format
        return {
            "X-Sample-Rate": str(self.sample_rate),
            "X-Channels": str(self.voice.channels),
            "X-Audio-Format": "pcm_s16le" if name == "pcm" else name,
            "X-Voice": self.voice.name,
            "X-Text-Units": str(len(self.units)),
            **({"X-Speaker-Id": str(self.speaker_id)} if self.speaker_id is not None else {}),
        }

    def _unit_audio(self):
        request = self.request
        config = synthesis_config(self.voice, request.speed, request.noise_scale, request.noise_w_scale,
                                  self.speaker_id)
        return synthesize_units(self.voice, self.units, request.speed,
                                self.sentence_silence_s, self.progress, config)

    def stream(self) -> Iterator[bytes]:
        """Encoded audio, one piece per synthesized unit (the header rides with the first)."""
        encoder = encode.make_encoder(self.request.response_format, self.voice.sample_rate,
                                      self.voice.channels)
        pending = encoder.start()
        try:
            for unit in self._unit_audio():
                pending += encoder.encode(unit.pcm)
                if pending:
                    yield pending
                    pending = b""
            pending += encoder.finish()
            if pending:
                yield pending
        finally:
            encoder.finish()  # a client that went away mid-stream: release the codec

    def render(self) -> bytes:
        """The whole response; WAV headers carry the exact sizes."""
        pcm = [unit.pcm for unit in self._unit_audio()]
        total = sum(p.size for p in pcm)
        encoder = encode.make_encoder(self.request.response_format, self.voice.sample_rate,
                                      self.voice.channels, total_samples=total)
        parts = [encoder.start()] + [encoder.encode(p) for p in pcm] + [encoder.finish()]
        return b"".join(parts)


class TTSService:
    def __init__(self, settings: TTSSettings, base_dir: Optional[Path] = None):
        self.settings = settings
        self.voices = VoiceRegistry.from_config(settings.voices, settings.default_voice, base_dir,
                                               settings.onnx_threads, settings.voice_aliases)

    @classmethod
    def from_truss_config(cls, config: Optional[Mapping[str, Any]], base_dir: Optional[Path] = None):
        return cls(TTSSettings.from_model_metadata((config or {}).get("model_metadata")), base_dir)

    def load(self) -> None:
        self.voices.load()

    def prepare(self, body: Any) -> SpeechJob:
        request = parse_speech_request(body, self.settings.max_input_chars,
                                       self.settings.default_response_format)
        voice = self.voices.get(request.voice)
        speaker_id = voice.speaker_id(request.speaker)
        text = clean_text(request.input)
        if not is_speakable(text):
            raise InputError("'input' has nothing speakable: no letters or digits once control "
                             "characters, emoji and symbols are removed", field="input")
        units = [normalize_sentence(u, voice.language)
                 for u in streaming_units(text, self.settings.first_chunk_max_words, voice.language)]
        units = [u for u in units if is_speakable(u)]
        if not units:
            raise InputError("'input' has nothing speakable", field="input")
        return SpeechJob(request, voice, units, self.settings.sentence_silence_s, speaker_id)
