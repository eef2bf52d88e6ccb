"""Test-only chains over the StepNode (http_fakes; endpoint "fakenode": env COMPOUND_NODE_URL_FAKENODE),
loaded by the service through COMPOUND_CHAIN_PLUGINS (a .py path), like a user plugin would be."""
from __future__ import annotations

from pydantic import BaseModel, Field

from compound.service.graph import Chain, Node, RetryPolicy


class TwoStepInput(BaseModel):
    text: str = Field(..., min_length=1)
    sleep_first: float = 0.0
    sleep_second: float = 0.0
    fail_first: int = 0  # the fake node answers 503 this many times for step "first"


def _req(step: str, sleep_attr: str, fail_attr: str = ""):
    def build(si):
        body = {"step": step, "text": si.input.text, "sleep_s": getattr(si.input, sleep_attr)}
        if fail_attr:
            body["fail_times"] = getattr(si.input, fail_attr)
        return body
    return build


_FAST_RETRY = RetryPolicy(attempts=3, initial_delay_s=0.05, max_delay_s=0.2)

def _two_step(name: str, second_mode: str, description: str) -> Chain:
    """Two fake model calls in sequence; `second_mode` "async" makes the second a Baseten-style
    async call (submit, then wait for the signed webhook callback)."""
    return Chain(
        name,
        input_model=TwoStepInput,
        nodes=[
            Node.truss("first", "fakenode", _req("first", "sleep_first", "fail_first"),
                       parse=lambda r, si: r.data, retry=_FAST_RETRY, timeout_s=30),
            Node.truss("second", "fakenode", _req("second", "sleep_second"), parse=lambda r, si: r.data,
                       depends_on=["first"], retry=_FAST_RETRY, timeout_s=30, mode=second_mode),
        ],
        output=lambda steps, inp: {"first": steps["first"]["echo"], "second": steps["second"]["echo"],
                                   "first_call": steps["first"]["call"]},
        description=description,
    )


two_step = _two_step("fake_two_step", "sync", "two fake model calls in sequence")
async_two_step = _two_step("fake_async", "async", "a sync call, then an async (webhook) call")


class ReviewInput(BaseModel):
    text: str


approval = Chain(
    "fake_approval",
    input_model=ReviewInput,
    nodes=[
        Node.truss("draft", "fakenode", lambda si: {"step": "draft", "text": si.input.text},
                   parse=lambda r, si: r.data, retry=_FAST_RETRY),
        Node.human("review", depends_on=["draft"], timeout_s=60),
        Node.code("publish", lambda si: {"published": si["draft"]["echo"],
                                         "note": si["review"]["comment"]}, depends_on=["review"]),
    ],
    output=lambda steps, inp: steps["publish"],
    description="model draft, human review, publish",
)


class SpeakInput(BaseModel):
    text: str
    response_format: str = "wav"


streaming = Chain(
    "fake_stream",
    input_model=SpeakInput,
    nodes=[
        Node.truss("first", "fakenode", lambda si: {"step": "first", "text": si.input.text},
                   parse=lambda r, si: r.data, retry=_FAST_RETRY),
        Node.truss("speak", "fakenode",
                   lambda si: {"step": "speak", "text": si["first"]["echo"], "stream_chunks": 4},
                   depends_on=["first"], stream=True, retry=_FAST_RETRY,
                   parse=lambda r, si: {"bytes": len(r.content), "content_type": r.content_type}),
    ],
    output=lambda steps, inp: steps["speak"],
    stream_node="speak",
    description="a model call, then a streamed tail (like voice's TTS)",
)

CHAINS = {c.name: c for c in (two_step, approval, async_two_step, streaming)}
