"""extract: audio or text -> (whisper) -> json record matching the request's JSON Schema, with a
check step that asks the json node again, with the failed facts as feedback, until they hold."""
from __future__ import annotations

from typing import Optional

from pydantic import BaseModel, Field, field_validator, model_validator

from compound.service.chains.inputs import check_audio_b64
from compound.service.chains.models_api import (
    MODEL_RETRY,
    Record,
    Text,
    json_request,
    parse_record,
    parse_transcript,
)
from compound.service.chains.record_spec import RecordSpec
from compound.service.graph import (
    Chain,
    CheckFailed,
    Node,
    Repair,
    StepInput,
)


class ExtractInput(RecordSpec):
    audio: Optional[str] = Field(None, description="speech to transcribe first, base64")
    text: Optional[str] = Field(None, min_length=1, max_length=20_000)
    instructions: Optional[str] = Field(None, max_length=2000)
    max_rounds: int = Field(3, ge=1, le=5, description="json attempts the checks may ask for")
    max_tokens: int = Field(256, ge=16, le=1024)

    @field_validator("audio")
    @classmethod
    def _audio_is_base64(cls, value: Optional[str]) -> Optional[str]:
        return None if value is None else check_audio_b64(value)

    @model_validator(mode="after")
    def _one_source(self):
        if (self.audio is None) == (self.text is None):
            raise ValueError("give exactly one of 'audio' (base64) or 'text'")
        self.check_fields_exist()
        return self


def source_text(si: StepInput) -> str:
    transcribed = si.steps.get("transcribe")
    return transcribed["text"] if transcribed else si.input.text


def _extract_request(si: StepInput) -> dict:
    inp: ExtractInput = si.input  # type: ignore[assignment]
    return json_request(inp.schema_(), source_text(si), inp.instructions, si.feedback, inp.max_tokens)


def check_facts(si: StepInput) -> dict:
    inp: ExtractInput = si.input  # type: ignore[assignment]
    failed = inp.facts(si["extract"]["record"])
    if failed:
        raise CheckFailed(failed)
    return {"passed": [c.describe() for c in inp.checks_()], "rounds": si.round}


def _output(steps: dict, inp: BaseModel) -> dict:
    return {"transcript": (steps.get("transcribe") or {}).get("text"),
            "record": steps["extract"]["record"],
            "checks_passed": steps["check"]["passed"], "rounds": steps["check"]["rounds"]}


CHAIN = Chain(
    "extract",
    description="audio or text -> whisper (audio only) -> json record; checks retry json with feedback",
    input_model=ExtractInput,
    output=_output,
    nodes=[
        Node.truss("transcribe", "whisper", lambda si: {"audio": si.input.audio}, parse_transcript,
                   when=lambda si: si.input.audio is not None, output_model=Text,
                   timeout_s=120, retry=MODEL_RETRY),
        Node.truss("extract", "json", _extract_request, parse_record, depends_on=["transcribe"],
                   output_model=Record, timeout_s=120, retry=MODEL_RETRY),
        Node.code("check", check_facts, depends_on=["extract"],
                  repair=Repair("extract", max_rounds=lambda inp: inp.max_rounds)),
    ],
)
