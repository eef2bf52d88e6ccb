"""Executor behaviour against fake model nodes (real local HTTP servers with scripted faults)."""
from __future__ import annotations

import asyncio
import threading

import pytest
from pydantic import BaseModel

from http_fakes import Chunks, FakeNode, Raw, Sleep, Status, WebhookReceiver, free_closed_port_url
from compound.service.callbacks import CallbackRegistry
from compound.service.endpoints import NodeEndpoints
from compound.service.executor import (ChainFailed, ChainInputError, InMemoryJournal, RunContext,
                                       StepRecord, approval_key, run_chain, stream_chain)
from compound.service.graph import (Chain, ChainDefinitionError, Node, NodeError, RetryPolicy)

FAST = RetryPolicy(attempts=3, initial_delay_s=0.01, max_delay_s=0.05)


class In(BaseModel):
    x: int = 1


class Out(BaseModel):
    value: int


def ctx_for(urls: dict, **kw) -> RunContext:
    return RunContext(endpoints=NodeEndpoints(urls=urls, env={}), **kw)


def value_node(name: str, endpoint: str, **kw) -> Node:
    """A truss node sending {"x": input.x} and reading {"value": int}."""
    kw.setdefault("retry", FAST)
    kw.setdefault("timeout_s", 5)
    return Node.truss(name, endpoint, lambda si: {"x": si.input.x, "node": name},
                      lambda reply, si: reply.data, output_model=Out, **kw)


def one_node_chain(**kw) -> Chain:
    return Chain("one", In, [value_node("a", "m", **kw)], output=lambda steps, inp: steps["a"])


async def wait_until(condition, timeout_s: float = 30.0) -> None:
    """Poll instead of sleeping a guessed amount: the box's 2 cores are shared."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached"
        await asyncio.sleep(0.01)


async def run(chain: Chain, ctx: RunContext, inputs=None, journal=None):
    return await run_chain(chain, inputs or {"x": 1}, journal or InMemoryJournal(ctx.registry), ctx)


async def test_independent_nodes_overlap_and_dependents_wait():
    slow = lambda body, n: Sleep(0.4, {"value": 10 if body["node"] == "a" else 20})
    with FakeNode(slow) as m:
        chain = Chain("diamond", In, [
            value_node("a", "m"),
            value_node("b", "m"),
            Node.code("sum", lambda si: {"value": si["a"]["value"] + si["b"]["value"]},
                      depends_on=["a", "b"], output_model=Out),
        ], output=lambda steps, inp: steps["sum"])
        result = await run(chain, ctx_for({"m": m.url}))
    assert result.status == "succeeded", result.error
    assert result.outputs == {"value": 30}
    rec = {r.node: r for r in result.trace}
    # a and b overlapped in time; sum started only after both ended
    assert rec["a"].started_at < rec["b"].ended_at and rec["b"].started_at < rec["a"].ended_at
    assert rec["sum"].started_at >= max(rec["a"].ended_at, rec["b"].ended_at)


async def test_fake_node_5xx_then_recovers():
    with FakeNode(lambda body, n: Status(500) if n < 2 else {"value": 7}) as m:
        result = await run(one_node_chain(), ctx_for({"m": m.url}))
    assert result.status == "succeeded", result.error
    assert result.outputs == {"value": 7}
    assert result.trace[0].attempts == 3 and len(m.calls) == 3


async def test_fake_node_5xx_exhausts_attempts_with_clear_error():
    with FakeNode(lambda body, n: Status(503, "overloaded")) as m:
        result = await run(one_node_chain(), ctx_for({"m": m.url}))
    assert result.status == "failed"
    assert result.failed_step == "a"
    assert "node 'a' failed after 3 attempt(s)" in result.error
    assert "HTTP 503" in result.error and "overloaded" in result.error
    assert len(m.calls) == 3


async def test_fake_node_4xx_is_not_retried():
    with FakeNode(lambda body, n: Status(422, "bad field")) as m:
        result = await run(one_node_chain(), ctx_for({"m": m.url}))
    assert result.status == "failed"
    assert "after 1 attempt(s): 4xx: HTTP 422" in result.error
    assert len(m.calls) == 1


async def test_fake_node_timeout_is_retried_then_fails():
    # 1 s, not less: each attempt must reach the fake node (counted below) before it times out,
    # and the node's server thread shares a busy machine's CPU with this test.
    with FakeNode(lambda body, n: Sleep(30)) as m:
        chain = one_node_chain(timeout_s=1.0, retry=RetryPolicy(attempts=2, initial_delay_s=0.01))
        result = await run(chain, ctx_for({"m": m.url}))
    assert result.status == "failed"
    assert "node 'a' failed after 2 attempt(s): timeout" in result.error
    assert len(m.calls) == 2


async def test_fake_node_bad_output_fails_schema_and_is_retried():
    with FakeNode(lambda body, n: {"value": "not a number"} if n == 0 else {"wrong": 1}) as m:
        result = await run(one_node_chain(), ctx_for({"m": m.url}))
    assert result.status == "failed"
    assert "after 3 attempt(s): schema: output does not match Out" in result.error
    assert "value" in result.error


async def test_fake_node_non_json_reply_is_a_schema_error():
    with FakeNode(lambda body, n: Raw(b"RIFF....", "audio/wav")) as m:
        chain = Chain("one", In, [Node.truss("a", "m", lambda si: {}, retry=FAST, timeout_s=5)],
                      output=lambda steps, inp: steps["a"])
        result = await run(chain, ctx_for({"m": m.url}))
    assert result.status == "failed" and "schema: output must be an object" in result.error


async def test_fake_node_down_is_a_connect_error():
    result = await run(one_node_chain(), ctx_for({"m": free_closed_port_url()}))
    assert result.status == "failed"
    assert "node 'a' failed after 3 attempt(s): connect: ConnectError" in result.error


async def test_fake_node_failure_leaves_concurrent_runs_unaffected():
    with FakeNode(lambda body, n: Status(500)) as bad, FakeNode(lambda body, n: Sleep(0.1, {"value": 1})) as good:
        chain = one_node_chain()
        results = await asyncio.gather(
            run(chain, ctx_for({"m": bad.url})),
            *[run(chain, ctx_for({"m": good.url})) for _ in range(3)])
    assert [r.status for r in results] == ["failed", "succeeded", "succeeded", "succeeded"]


async def test_failure_cancels_running_siblings():
    # b would answer after 60 s; the run must end long before (it cancels b when a fails)
    with FakeNode(lambda body, n: Status(500) if body["node"] == "a" else Sleep(60, {"value": 1})) as m:
        chain = Chain("two", In, [value_node("a", "m", retry=RetryPolicy(attempts=1)),
                                  value_node("b", "m", timeout_s=90)],
                      output=lambda steps, inp: {})
        result = await asyncio.wait_for(run(chain, ctx_for({"m": m.url})), 30)
    assert result.status == "failed" and result.failed_step == "a"
    assert [r.node for r in result.trace] == ["a"]


async def test_code_step_exception_names_the_node():
    chain = Chain("code", In, [Node.code("divide", lambda si: {"value": 1 // 0})],
                  output=lambda steps, inp: steps["divide"])
    result = await run(chain, ctx_for({}))
    assert result.status == "failed"
    assert result.error == "node 'divide' failed after 1 attempt(s): code: ZeroDivisionError: integer division or modulo by zero"


async def test_broken_when_condition_fails_the_run_naming_the_node():
    chain = Chain("broken", In, [
        Node.code("maybe", lambda si: {"value": 1}, when=lambda si: si.input.missing_field),
    ], output=lambda steps, inp: steps["maybe"])
    result = await run(chain, ctx_for({}))
    assert result.status == "failed" and result.failed_step == "maybe"
    assert result.error.startswith("node 'maybe' failed: code: AttributeError")


async def test_skipped_node_satisfies_dependents():
    chain = Chain("skip", In, [
        Node.code("maybe", lambda si: {"value": 1}, when=lambda si: si.input.x > 5),
        Node.code("after", lambda si: {"saw": si["maybe"]}, depends_on=["maybe"]),
    ], output=lambda steps, inp: steps["after"])
    result = await run(chain, ctx_for({}), {"x": 1})
    assert result.status == "succeeded"
    assert result.outputs == {"saw": None}
    assert [r.status for r in result.trace] == ["skipped", "succeeded"]


async def test_invalid_chain_input_raises_with_field_names():
    with pytest.raises(ChainInputError, match="x: Input should be a valid integer"):
        await run(one_node_chain(), ctx_for({}), {"x": "many"})


async def test_journal_replay_skips_finished_steps():
    with FakeNode(lambda body, n: {"value": 5}) as m:
        chain = Chain("two", In, [
            value_node("a", "m"),
            Node.code("double", lambda si: {"value": si["a"]["value"] * 2}, depends_on=["a"]),
        ], output=lambda steps, inp: steps["double"])
        journal = InMemoryJournal()
        await journal.record_step(StepRecord("a", "succeeded", {"value": 21}, None, 1, 0.0, 1.0, "a"))
        result = await run(chain, ctx_for({"m": m.url}), journal=journal)
    assert result.outputs == {"value": 42}
    assert m.calls == []  # a came from the journal
    assert set(journal.finished_steps()) == {"a", "double"}


def callback_receiver(registry: CallbackRegistry) -> WebhookReceiver:
    """Stands in for the chain service's /v1/callbacks/baseten: resolves the registry."""
    return WebhookReceiver(on_payload=lambda body: registry.resolve(body["request_id"], body))


async def test_async_mode_goes_through_async_predict_and_webhook():
    registry = CallbackRegistry()
    with FakeNode(lambda body, n: Sleep(0.2, {"value": body["x"] * 3})) as m, callback_receiver(registry) as cb:
        chain = one_node_chain(mode="async")
        ctx = ctx_for({"m": m.url}, callback_url=cb.url, registry=registry)
        journal = InMemoryJournal(registry)
        result = await run(chain, ctx, {"x": 4}, journal)
    assert result.status == "succeeded", result.error
    assert result.outputs == {"value": 12}
    assert len(m.async_calls) == 1
    assert m.async_calls[0]["webhook_endpoint"] == cb.url
    assert m.async_calls[0]["model_input"] == {"x": 4, "node": "a"}
    assert cb.requests[0].payload["request_id"] and journal.pending() == {}


async def test_async_mode_model_error_is_retried_and_reported():
    registry = CallbackRegistry()
    with FakeNode(lambda body, n: Status(500, "boom")) as m, callback_receiver(registry) as cb:
        ctx = ctx_for({"m": m.url}, callback_url=cb.url, registry=registry)
        result = await run(one_node_chain(mode="async"), ctx, journal=InMemoryJournal(registry))
    assert result.status == "failed"
    assert "after 3 attempt(s): 5xx: async request" in result.error and "boom" in result.error
    assert len(m.async_calls) == 3


async def test_async_mode_without_callback_url_fails_clearly():
    result = await run(one_node_chain(mode="async"), ctx_for({"m": "http://127.0.0.1:9"}))
    assert result.status == "failed" and "config: node 'a' is async but the run has no callback_url" in result.error


async def test_resumed_async_step_waits_for_the_noted_request_instead_of_resubmitting():
    registry = CallbackRegistry()
    with FakeNode(lambda body, n: {"value": 1}) as m:
        ctx = ctx_for({"m": m.url}, callback_url="http://127.0.0.1:9/cb", registry=registry)
        journal = InMemoryJournal(registry)
        await journal.note_pending("a", "callback", "req-from-before-restart")
        task = asyncio.ensure_future(run(one_node_chain(mode="async"), ctx, journal=journal))
        await wait_until(lambda: registry.waiting() == ["req-from-before-restart"])
        registry.resolve("req-from-before-restart", {"request_id": "req-from-before-restart",
                                                     "data": {"value": 99}, "errors": []})
        result = await asyncio.wait_for(task, 5)
    assert result.outputs == {"value": 99}
    assert m.async_calls == [] and m.calls == []


async def test_human_step_approved_and_rejected():
    chain = Chain("review", In, [
        Node.code("draft", lambda si: {"text": "hello"}),
        Node.human("approve", depends_on=["draft"], timeout_s=5),
        Node.code("publish", lambda si: {"published": si["draft"]["text"], "note": si["approve"]["comment"]},
                  depends_on=["approve"]),
    ], output=lambda steps, inp: steps["publish"])
    for approved in (True, False):
        registry = CallbackRegistry()
        journal = InMemoryJournal(registry, run_id="r1")
        task = asyncio.ensure_future(run(chain, ctx_for({}, registry=registry), journal=journal))
        await wait_until(lambda: journal.pending() == {"approve": {"kind": "approval", "key": "approve"}})
        registry.resolve(approval_key("r1", "approve"), {"approved": approved, "comment": "ok" if approved else "too rude"})
        result = await asyncio.wait_for(task, 5)
        if approved:
            assert result.status == "succeeded" and result.outputs == {"published": "hello", "note": "ok"}
        else:
            assert result.status == "failed" and result.error == "node 'approve' rejected: too rude"


async def test_cancel_stops_a_running_chain():
    # the node would answer after 60 s; the cancel must end the run long before
    with FakeNode(lambda body, n: Sleep(60, {"value": 1})) as m:
        cancel = asyncio.Event()
        task = asyncio.ensure_future(run(one_node_chain(timeout_s=90), ctx_for({"m": m.url}, cancel=cancel)))
        await wait_until(lambda: len(m.calls) == 1)
        cancel.set()
        result = await asyncio.wait_for(task, 30)
    assert result.status == "canceled" and result.trace == []


def _stream_chain(**tail_kw) -> Chain:
    tail_kw.setdefault("retry", FAST)
    return Chain("talk", In, [
        Node.code("text", lambda si: {"text": f"say {si.input.x}"}),
        Node.truss("speak", "tts", lambda si: {"input": si["text"]["text"], "stream": si.stream},
                   depends_on=["text"], stream=True, timeout_s=5, **tail_kw),
    ], output=lambda steps, inp: {}, stream_node="speak")


async def test_stream_chain_passes_bytes_through_as_they_arrive():
    # The node sends the second sentence only once the first one has reached us (the gate):
    # if the chain buffered the body, the first chunk would arrive only after the gate's 30 s
    # timeout, with the node finished, and the assertion below would fail.
    gate = threading.Event()
    with FakeNode(lambda body, n: Chunks([b"first-sentence", b"second-sentence"], gate=gate)) as tts:
        heads = []
        chunks = []
        async for chunk in stream_chain(_stream_chain(), {"x": 3}, ctx_for({"tts": tts.url}), on_head=heads.append):
            if not chunks:
                # The first sentence reached us while the node was still producing the second.
                assert not tts.stream_finished.is_set()
                gate.set()
            chunks.append(chunk)
    assert b"".join(chunks) == b"first-sentencesecond-sentence"
    assert tts.calls == [{"input": "say 3", "stream": True}]
    assert heads[0].steps == {"text": {"text": "say 3"}}


async def test_stream_chain_retries_before_first_byte_and_fails_clearly():
    with FakeNode(lambda body, n: Status(500) if n == 0 else Chunks([b"ok"])) as tts:
        out = [c async for c in stream_chain(_stream_chain(), {}, ctx_for({"tts": tts.url}))]
    assert out == [b"ok"]
    with FakeNode(lambda body, n: Status(502)) as tts:
        with pytest.raises(ChainFailed, match="node 'speak' failed after 3 attempt"):
            async for _ in stream_chain(_stream_chain(), {}, ctx_for({"tts": tts.url})):
                pass


async def test_stream_chain_head_failure_raises_before_any_byte():
    chain = Chain("talk", In, [
        Node.code("text", lambda si: (_ for _ in ()).throw(NodeError("code", "no text"))),
        Node.truss("speak", "tts", lambda si: {}, depends_on=["text"], stream=True),
    ], output=lambda steps, inp: {}, stream_node="speak")
    with pytest.raises(ChainFailed) as info:
        async for _ in stream_chain(chain, {}, ctx_for({"tts": free_closed_port_url()})):
            pass
    assert info.value.result.failed_step == "text"


def test_chain_definition_errors_are_caught_early():
    code = lambda name, deps=(): Node.code(name, lambda si: {}, depends_on=list(deps))
    out = lambda steps, inp: {}
    with pytest.raises(ChainDefinitionError, match="cycle"):
        Chain("c", In, [code("a", ["b"]), code("b", ["a"])], out)
    with pytest.raises(ChainDefinitionError, match="unknown dependencies"):
        Chain("c", In, [code("a", ["nope"])], out)
    with pytest.raises(ChainDefinitionError, match="duplicate"):
        Chain("c", In, [code("a"), code("a")], out)
    from compound.service.graph import Repair
    with pytest.raises(ChainDefinitionError, match="without waiting for the check"):
        Chain("c", In, [code("gen"), Node.code("chk", lambda si: {}, depends_on=["gen"], repair=Repair("gen")),
                        code("use", ["gen"])], out)
    with pytest.raises(ChainDefinitionError, match="stream_node"):
        Chain("c", In, [code("a")], out, stream_node="a")
    with pytest.raises(ValueError, match="unknown error kinds"):
        RetryPolicy(retry_on={"5xx", "sometimes"})
