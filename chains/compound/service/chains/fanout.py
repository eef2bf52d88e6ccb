"""fanout: long text -> parts (paragraphs or sentences, bounded) -> json per part, in parallel ->
validated against schema and checks (failing parts are asked again with feedback) -> merged."""
from __future__ import annotations

import re
from typing import Literal, Optional

from pydantic import BaseModel, Field, model_validator

from compound.service.chains.checks import (
    schema_errors,
)
from compound.service.chains.models_api import MODEL_RETRY, json_request, parse_record
from compound.service.chains.record_spec import RecordSpec
from compound.service.graph import (
    Chain,
    CheckFailed,
    Node,
    Repair,
    StepInput,
)

MAX_PARTS = 32


class FanoutInput(RecordSpec):
    text: str = Field(..., min_length=1, max_length=200_000)
    split: Literal["paragraphs", "sentences"] = "paragraphs"
    max_parts: int = Field(8, ge=1, le=MAX_PARTS, description="parts beyond this are merged, not dropped")
    instructions: Optional[str] = Field(None, max_length=2000)
    max_rounds: int = Field(2, ge=1, le=3)
    max_tokens: int = Field(256, ge=16, le=1024)

    @model_validator(mode="after")
    def _checks_fit_schema(self):
        if not self.text.strip():
            raise ValueError("text is blank")
        self.check_fields_exist()
        return self


def split_text(text: str, how: str, max_parts: int) -> list[str]:
    if how == "sentences":
        pieces = re.split(r"(?<=[.!?])\s+", text)
    else:
        pieces = re.split(r"\n\s*\n", text)
    pieces = [" ".join(p.split()) for p in pieces if p.strip()]
    if len(pieces) <= max_parts:
        return pieces
    # Bound the fan-out by joining neighbours into max_parts groups of near-equal size.
    size, extra = divmod(len(pieces), max_parts)
    groups, start = [], 0
    for i in range(max_parts):
        end = start + size + (1 if i < extra else 0)
        groups.append(" ".join(pieces[start:end]))
        start = end
    return groups


def _split(si: StepInput) -> dict:
    inp: FanoutInput = si.input  # type: ignore[assignment]
    return {"parts": split_text(inp.text, inp.split, inp.max_parts)}


def _part_request(si: StepInput) -> dict:
    inp: FanoutInput = si.input  # type: ignore[assignment]
    prefix = f"part {si.index}: "
    feedback = [f[len(prefix):] for f in si.feedback if f.startswith(prefix)]
    return json_request(inp.schema_(), si.item, inp.instructions, feedback, inp.max_tokens)


def _validate(si: StepInput) -> dict:
    inp: FanoutInput = si.input  # type: ignore[assignment]
    failed = []
    for i, item in enumerate(si["extract"]["items"]):
        problems = schema_errors(inp.schema_(), item["record"]) + inp.facts(item["record"])
        failed += [f"part {i}: {p}" for p in problems]
    if failed:
        raise CheckFailed(failed)
    return {"rounds": si.round}


def _merge(si: StepInput) -> dict:
    parts = si["split"]["parts"]
    return {"records": [{"part": i, "text": parts[i], "record": item["record"]}
                        for i, item in enumerate(si["extract"]["items"])]}


def _output(steps: dict, inp: BaseModel) -> dict:
    return {"parts": len(steps["split"]["parts"]), "records": steps["merge"]["records"],
            "rounds": steps["validate"]["rounds"]}


CHAIN = Chain(
    "fanout",
    description="long text split into parts, each extracted by the json node in parallel, validated, merged",
    input_model=FanoutInput,
    output=_output,
    nodes=[
        Node.code("split", _split),
        Node.truss("extract", "json", _part_request, parse_record, depends_on=["split"],
                   map_over=lambda si: si["split"]["parts"], concurrency=4, timeout_s=120,
                   retry=MODEL_RETRY),
        Node.code("validate", _validate, depends_on=["extract"],
                  repair=Repair("extract", max_rounds=lambda inp: inp.max_rounds)),
        Node.code("merge", _merge, depends_on=["split", "extract", "validate"]),
    ],
)
