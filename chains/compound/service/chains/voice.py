"""voice: spoken question -> transcript -> reply text -> spoken reply (streamed by stream_chain)."""
from __future__ import annotations

import re
from typing import Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, field_validator

from compound.service.chains.inputs import check_audio_b64
from compound.service.chains.models_api import (
    MODEL_RETRY,
    Audio,
    NonEmptyText,
    Text,
    parse_audio,
    parse_chat,
    parse_transcript,
)
from compound.service.graph import Chain, Node, StepInput

SYSTEM_PROMPT = ("You are a friendly restaurant host answering the phone. Reply to the caller in "
                 "one or two short, plain sentences that sound natural when spoken.")


MAX_SPOKEN_SENTENCES = 3


class VoiceInput(BaseModel):
    model_config = ConfigDict(extra="forbid")
    audio: str = Field(..., description="the caller's audio (wav/mp3/...), base64")
    system_prompt: str = Field(SYSTEM_PROMPT, min_length=1, max_length=4000)
    max_tokens: int = Field(80, ge=1, le=512)
    temperature: float = Field(0.3, ge=0, le=2)
    response_format: Literal["wav", "mp3", "pcm"] = "wav"
    speed: float = Field(1.0, ge=0.5, le=2.0)

    @field_validator("audio")
    @classmethod
    def _audio_is_base64(cls, value: str) -> str:
        return check_audio_b64(value)


def speakable(si: StepInput) -> dict:
    """LLM text -> text a TTS voice should read: no markdown, emoji or runaway length."""
    text = si["reply"]["text"]
    text = re.sub(r"[*_`#>|~]+", "", text)
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)  # [label](url) -> label
    text = re.sub(r"[^\w\s.,!?;:'\"()%$&@/-]", "", text)  # emoji and symbols the voice would spell out
    text = " ".join(text.split())
    # Small models loop ("I'm sorry. I'm sorry. ..."): speak each sentence once, and at
    # most MAX_SPOKEN_SENTENCES of them — a phone reply is short.
    sentences, seen = [], set()
    for sentence in re.split(r"(?<=[.!?])\s+", text):
        key = sentence.lower().strip(" .!?")
        if key and key not in seen:
            seen.add(key)
            sentences.append(sentence)
    text = " ".join(sentences[:MAX_SPOKEN_SENTENCES])
    if len(text) > 600:  # cut at a sentence end: replies are meant to be short
        cut = max(text.rfind(p, 0, 600) for p in ".!?")
        text = text[: cut + 1] if cut > 0 else text[:600]
    return {"text": text or "Sorry, could you say that again?"}


def _chat_request(si: StepInput) -> dict:
    inp: VoiceInput = si.input  # type: ignore[assignment]
    heard = si["transcribe"]["text"] or "(silence)"
    return {"messages": [{"role": "system", "content": inp.system_prompt},
                         {"role": "user", "content": heard}],
            "max_tokens": inp.max_tokens, "temperature": inp.temperature, "stream": False}


def _tts_request(si: StepInput) -> dict:
    inp: VoiceInput = si.input  # type: ignore[assignment]
    return {"input": si["speakable"]["text"], "response_format": inp.response_format,
            "speed": inp.speed, "stream": si.stream}


def _output(steps: dict, inp: BaseModel) -> dict:
    speak: Optional[dict] = steps.get("speak")
    return {"transcript": steps["transcribe"]["text"], "reply_text": steps["speakable"]["text"],
            **({"audio_b64": speak["audio_b64"], "content_type": speak["content_type"],
                "audio_bytes": speak["bytes"]} if speak else {})}


CHAIN = Chain(
    "voice",
    description="audio question -> whisper -> llm -> tts; the reply audio streams sentence by sentence",
    input_model=VoiceInput,
    output=_output,
    stream_node="speak",
    nodes=[
        Node.truss("transcribe", "whisper", lambda si: {"audio": si.input.audio}, parse_transcript,
                   output_model=Text, timeout_s=120, retry=MODEL_RETRY),
        Node.truss("reply", "llm", _chat_request, parse_chat, depends_on=["transcribe"],
                   output_model=NonEmptyText, timeout_s=120, retry=MODEL_RETRY),
        Node.code("speakable", speakable, depends_on=["reply"], output_model=NonEmptyText),
        Node.truss("speak", "tts", _tts_request, parse_audio, depends_on=["speakable"],
                   output_model=Audio, timeout_s=120, retry=MODEL_RETRY, stream=True),
    ],
)
