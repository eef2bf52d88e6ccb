"""Synthesize text units one at a time with a Piper voice.

Piper's `PiperVoice.synthesize` phonemizes the whole text before yielding its first
chunk; feeding it one unit (sentence or clause) at a time is what lets the first
unit's audio leave before the rest of the text is even phonemized.
"""
from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Iterable, Iterator

import numpy as np
from piper import SynthesisConfig

from compound_models.tts.voices import Voice

MIN_SPEED, MAX_SPEED = 0.25, 4.0
_ENDS_SENTENCE = re.compile(r"[.!?\u2026][\"')\]\u201d\u2019]*$")


@dataclass
class UnitAudio:
    text: str
    pcm: np.ndarray  # int16, mono, at voice.sample_rate
    index: int


@dataclass
class SynthesisProgress:
    """How far a request got; read by tests and the bench (chunk order, not timing)."""
    units_total: int = 0
    units_synthesized: int = 0
    samples: int = 0
    per_unit_seconds: list = field(default_factory=list)


def synthesis_config(voice: Voice, speed: float, noise_scale: float | None = None,
                     noise_w_scale: float | None = None, speaker_id: int | None = None) -> SynthesisConfig:
    # speed 2 = twice as fast = half the phoneme durations; scale the voice's own tuned
    # length_scale (from its json) rather than replacing it. Noise left as None keeps the
    # voice's own values (Piper reads them from the json).
    return SynthesisConfig(length_scale=voice.default_length_scale / speed,
                           noise_scale=noise_scale, noise_w_scale=noise_w_scale, speaker_id=speaker_id)


def synthesize_units(voice: Voice, units: Iterable[str], speed: float = 1.0,
                     sentence_silence_s: float = 0.0,
                     progress: SynthesisProgress | None = None,
                     config: SynthesisConfig | None = None) -> Iterator[UnitAudio]:
    """One UnitAudio per unit, each synthesized only when the previous one was consumed.

    `sentence_silence_s` of silence is appended to every unit that ends a sentence,
    except the last: a natural pause between sentences, and it is what a compressed
    encoder's look-ahead holds back. A unit cut at a clause break ("Thanks for calling,")
    gets none: Piper already pauses at the comma.
    """
    units = list(units)
    progress = progress if progress is not None else SynthesisProgress()
    progress.units_total = len(units)
    config = config or synthesis_config(voice, speed)
    silence = np.zeros(int(round(sentence_silence_s * voice.sample_rate)), dtype=np.int16)
    for index, unit in enumerate(units):
        started = time.perf_counter()
        pieces = []
        for chunk in voice.piper.synthesize(unit, syn_config=config):
            if chunk.sample_rate != voice.sample_rate:  # guard: the json and model disagree
                raise RuntimeError(
                    f"voice {voice.name} produced {chunk.sample_rate} Hz, its json says {voice.sample_rate}"
                )
            pieces.append(chunk.audio_int16_array)
        if index < len(units) - 1 and silence.size and _ENDS_SENTENCE.search(unit):
            pieces.append(silence)
        pcm = np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.int16)
        progress.per_unit_seconds.append(time.perf_counter() - started)
        progress.units_synthesized += 1
        progress.samples += pcm.size
        yield UnitAudio(unit, pcm, index)
