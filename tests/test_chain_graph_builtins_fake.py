"""Built-in chains' plumbing (feedback loop, fan-out, voice assembly) against fake model nodes.

The fakes script what a model *could* answer (a wrong party size, a record per paragraph) so the
chain logic is tested deterministically; tests/test_chains_builtin.py runs the real models.
"""
from __future__ import annotations

import asyncio
import base64
import re
import threading

import pytest

from http_fakes import Chunks, FakeNode, Raw, Sleep, Status
from compound.service.callbacks import CallbackRegistry
from compound.service.chains import BUILTIN_CHAINS, UnknownChain, get_chain
from compound.service.chains.checks import Check, evaluate
from compound.service.chains.fanout import split_text
from compound.service.endpoints import NodeEndpoints
from compound.service.executor import ChainInputError, InMemoryJournal, RunContext, run_chain, stream_chain
from compound.service.graph import RetryPolicy

FAST = RetryPolicy(attempts=3, initial_delay_s=0.01, max_delay_s=0.05)
B64 = base64.b64encode(b"RIFF-not-really-audio").decode()


def fast(chain):
    """The built-in chain with quick retries, so fault tests do not wait seconds."""
    return chain.with_nodes(**{n.name: {"retry": FAST} for n in chain.nodes if n.kind == "truss"})


def ctx(urls):
    return RunContext(endpoints=NodeEndpoints(urls=urls, env={}))


async def run(chain, inputs, urls):
    c = ctx(urls)
    return await run_chain(chain, inputs, InMemoryJournal(c.registry), c)


def prompt(body: dict) -> str:
    """The json request's text: all chat messages."""
    return "\n".join(m["content"] for m in body["messages"])


def booking(party_size=4, name="Alice", time="7 pm", vegetarian=1):
    return {"output": {"name": name, "party_size": party_size, "time": time, "vegetarian": vegetarian},
            "cache_hit": False, "compile_ms": 1.0, "usage": {}}


async def test_fake_json_extract_retries_with_failed_facts_as_feedback():
    with FakeNode(lambda body, n: booking(party_size=0) if n == 0 else booking()) as js:
        result = await run(fast(get_chain("extract")), {"text": "A table for four for Alice at 7 pm."},
                           {"json": js.url})
    assert result.status == "succeeded", result.error
    assert result.outputs["record"]["party_size"] == 4
    assert result.outputs["rounds"] == 2 and result.outputs["transcript"] is None
    first, second = js.calls
    assert "previous answer" not in prompt(first)
    assert "party_size must be a positive number of guests (got 0)" in prompt(second)
    assert "A table for four for Alice at 7 pm." in prompt(second)
    assert second["schema"]["properties"]["party_size"] == {"type": "integer", "description": "number of guests"}
    assert [r.name for r in result.trace] == ["transcribe", "extract", "check", "extract#2", "check#2"]
    assert [r.status for r in result.trace] == ["skipped", "succeeded", "rejected", "succeeded", "succeeded"]


async def test_fake_json_extract_fails_when_checks_never_hold():
    with FakeNode(lambda body, n: booking(party_size=0)) as js:
        result = await run(fast(get_chain("extract")), {"text": "hi", "max_rounds": 2}, {"json": js.url})
    assert result.status == "failed" and result.failed_step == "check"
    assert result.error.startswith("node 'check' rejected the output of 'extract' after 2 round(s)")
    assert "party_size must be a positive number of guests (got 0)" in result.error
    assert len(js.calls) == 2


async def test_fake_json_extract_booking_cross_field_fact():
    with FakeNode(lambda body, n: booking(vegetarian=6) if n == 0 else booking(vegetarian=1)) as js:
        result = await run(fast(get_chain("extract")), {"text": "Four of us, one vegetarian."}, {"json": js.url})
    assert result.status == "succeeded", result.error
    assert "vegetarian (6) cannot exceed party_size (4)" in prompt(js.calls[1])
    assert "keys name (name the table is booked under), party_size (number of guests)" in prompt(js.calls[0])


async def test_fake_json_extract_custom_schema_and_checks():
    schema = {"type": "object", "properties": {"total": {"type": "number"}, "currency": {"type": "string"}},
              "required": ["total", "currency"]}
    checks = [{"field": "currency", "op": "in", "value": ["EUR", "USD"]}]
    answers = [{"output": {"total": 12.5}},  # misses a required field: schema error, retried
               {"output": {"total": 12.5, "currency": "GBP"}},  # fails the check: feedback round
               {"output": {"total": 12.5, "currency": "EUR"}}]
    with FakeNode(lambda body, n: answers[n]) as js:
        result = await run(fast(get_chain("extract")), {"text": "Paid 12.50 euros", "schema": schema,
                                                         "checks": checks}, {"json": js.url})
    assert result.status == "succeeded", result.error
    assert result.outputs["record"] == {"total": 12.5, "currency": "EUR"}
    assert "currency must be one of ['EUR', 'USD'] (got 'GBP')" in prompt(js.calls[2])
    assert result.trace[1].attempts == 2  # the schema failure was retried inside the node


async def test_fake_whisper_feeds_extract_when_audio_given():
    with FakeNode(lambda body, n: {"text": "Table for two, name Bob, at 8 pm."}) as wh, \
            FakeNode(lambda body, n: booking(2, "Bob", "8 pm", 0)) as js:
        result = await run(fast(get_chain("extract")), {"audio": B64}, {"whisper": wh.url, "json": js.url})
    assert result.status == "succeeded", result.error
    assert wh.calls == [{"audio": B64}]
    assert "Table for two, name Bob, at 8 pm." in prompt(js.calls[0])
    assert result.outputs["transcript"] == "Table for two, name Bob, at 8 pm."


async def test_fake_json_extract_down_fails_with_node_error():
    with FakeNode(lambda body, n: Status(500)) as js:
        result = await run(fast(get_chain("extract")), {"text": "x"}, {"json": js.url})
    assert result.status == "failed" and result.failed_step == "extract"
    assert "node 'extract' failed after 3 attempt(s): 5xx: HTTP 500" in result.error


@pytest.mark.parametrize("inputs, message", [
    ({"text": "a", "audio": B64}, "exactly one of 'audio'"),
    ({}, "exactly one of 'audio'"),
    ({"audio": "%%%"}, "audio is not valid base64"),
    ({"text": "a", "schema": {"type": "object", "properties": {"a": {"type": "nope"}}}}, "not a valid JSON Schema"),
    ({"text": "a", "schema": {"type": "string"}}, "must describe one record"),
    ({"text": "a", "checks": [{"field": "seats", "op": ">", "value": 0}]}, "checks\\[0\\].field 'seats' is not a property"),
    ({"text": "a", "checks": [{"field": "name", "op": ">"}]}, "op '>' needs a value"),
    ({"text": "a", "max_rounds": 9}, "max_rounds"),
    ({"text": "a", "surprise": 1}, "surprise: Extra inputs are not permitted"),
])
async def test_extract_rejects_bad_input_naming_the_problem(inputs, message):
    with pytest.raises(ChainInputError, match=message):
        await run(get_chain("extract"), inputs, {})


def test_split_text_bounds_parts_without_dropping_text():
    text = "\n\n".join(f"Paragraph {i}." for i in range(10))
    parts = split_text(text, "paragraphs", 4)
    assert len(parts) == 4
    assert " ".join(parts) == " ".join(f"Paragraph {i}." for i in range(10))
    assert split_text("One. Two! Three?", "sentences", 8) == ["One.", "Two!", "Three?"]


async def test_fake_json_fanout_extracts_parts_in_parallel_and_merges_in_order():
    def respond(body, n):
        name = re.search(r"Guest (\w+)", prompt(body)).group(1)
        # bad size for Carol once: validated after merge and fed back to that part only
        size = 0 if name == "Carol" and "previous answer" not in prompt(body) else 3
        return Sleep(0.3, booking(size, name, "6 pm"))

    paragraphs = [f"Guest {n} wants a table for three at 6 pm." for n in ("Alice", "Bob", "Carol", "Dan")]
    with FakeNode(respond) as js:
        result = await run(fast(get_chain("fanout")), {"text": "\n\n".join(paragraphs)}, {"json": js.url})
    assert result.status == "succeeded", result.error
    out = result.outputs
    assert out["parts"] == 4 and out["rounds"] == 2
    assert [r["record"]["name"] for r in out["records"]] == ["Alice", "Bob", "Carol", "Dan"]
    assert [r["part"] for r in out["records"]] == [0, 1, 2, 3]
    second_round = js.calls[4:]
    assert len(second_round) == 4
    carol = [c for c in second_round if "Carol" in prompt(c)][0]
    assert "party_size must be a positive number of guests (got 0)" in prompt(carol)
    assert all("previous answer" not in prompt(c) for c in second_round if c is not carol)


async def test_fake_json_fanout_parts_overlap():
    calls_started = []

    def respond(body, n):
        calls_started.append(n)
        return Sleep(0.5, booking())

    with FakeNode(respond) as js:
        chain = fast(get_chain("fanout"))
        task = asyncio.ensure_future(run(chain, {"text": "a\n\nb\n\nc"}, {"json": js.url}))
        deadline = asyncio.get_running_loop().time() + 30  # against a hang, not a timing assert
        while len(calls_started) < 3:  # all three parts in flight before any answered
            assert asyncio.get_running_loop().time() < deadline
            await asyncio.sleep(0.01)
        result = await task
    assert result.status == "succeeded", result.error


async def test_fake_json_fanout_one_part_failing_fails_the_run_clearly():
    with FakeNode(lambda body, n: Status(500) if "bad" in prompt(body) else booking()) as js:
        result = await run(fast(get_chain("fanout")), {"text": "good\n\nbad\n\ngood"}, {"json": js.url})
    assert result.status == "failed" and result.failed_step == "extract"
    assert "node 'extract' failed after 3 attempt(s): 5xx: item 1: HTTP 500" in result.error


async def test_fake_nodes_voice_run_and_stream():
    reply = "**Sure!** A table for four at 7 pm 🎉 is booked."
    llm_reply = {"choices": [{"message": {"role": "assistant", "content": reply}}], "usage": {"completion_tokens": 9}}
    with FakeNode(lambda b, n: {"text": "Table for four at seven please."}) as wh, \
            FakeNode(lambda b, n: llm_reply) as llm, \
            FakeNode(lambda b, n: Chunks([b"RIFF1", b"RIFF2"]) if b["stream"] else Raw(b"RIFFALL")) as tts:
        urls = {"whisper": wh.url, "llm": llm.url, "tts": tts.url}
        result = await run(fast(get_chain("voice")), {"audio": B64}, urls)
        streamed = [c async for c in stream_chain(fast(get_chain("voice")), {"audio": B64}, ctx(urls))]
    assert result.status == "succeeded", result.error
    assert result.outputs["transcript"] == "Table for four at seven please."
    assert result.outputs["reply_text"] == "Sure! A table for four at 7 pm is booked."
    assert base64.b64decode(result.outputs["audio_b64"]) == b"RIFFALL"
    assert llm.calls[0]["messages"][1] == {"role": "user", "content": "Table for four at seven please."}
    assert tts.calls[0] == {"input": "Sure! A table for four at 7 pm is booked.", "response_format": "wav",
                            "speed": 1.0, "stream": False}
    assert tts.calls[1]["stream"] is True and b"".join(streamed) == b"RIFF1RIFF2"


async def test_fake_llm_empty_reply_is_retried_as_bad_output():
    answers = [{"choices": [{"message": {"content": ""}}]}, {"choices": [{"message": {"content": "Hello."}}]}]
    with FakeNode(lambda b, n: {"text": "hi"}) as wh, FakeNode(lambda b, n: answers[min(n, 1)]) as llm, \
            FakeNode(lambda b, n: Raw(b"RIFF")) as tts:
        result = await run(fast(get_chain("voice")), {"audio": B64},
                           {"whisper": wh.url, "llm": llm.url, "tts": tts.url})
    assert result.status == "succeeded", result.error
    assert result.outputs["reply_text"] == "Hello." and len(llm.calls) == 2


def test_checks_evaluate_facts_in_words():
    checks = [Check(field="party_size", op=">", value=0), Check(field="name", op="nonempty"),
              Check(field="when.hour", op="<=", value=23), Check(field="code", op="regex", value=r"^[A-Z]{3}$")]
    assert evaluate({"party_size": 2, "name": "A", "when": {"hour": 20}, "code": "ABC"}, checks) == []
    assert evaluate({"party_size": "2", "name": " ", "code": "abc"}, checks) == [
        "party_size must be > 0 (got '2')", "name must not be empty (got ' ')",
        "when.hour must be <= 23 (got missing)", "code must match /^[A-Z]{3}$/ (got 'abc')"]


def test_registry_lists_builtins_and_names_unknown():
    assert sorted(BUILTIN_CHAINS) == ["extract", "fanout", "voice"]
    with pytest.raises(UnknownChain) as info:
        get_chain("nope")
    assert str(info.value) == "unknown chain 'nope'; available: extract, fanout, voice"
    described = get_chain("voice").describe()
    assert [n["name"] for n in described["nodes"]] == ["transcribe", "reply", "speakable", "speak"]
    assert described["stream_node"] == "speak" and "audio" in described["input_schema"]["properties"]


async def test_callback_registry_early_and_cross_thread_resolve():
    registry = CallbackRegistry()
    assert registry.resolve("early", {"v": 1}) is False  # arrived before anyone waited
    assert await asyncio.wait_for(registry.expect("early"), 30) == {"v": 1}
    future = registry.expect("late")
    threading.Thread(target=registry.resolve, args=("late", {"v": 2})).start()
    assert await asyncio.wait_for(future, 30) == {"v": 2}
    assert registry.waiting() == []


def test_endpoints_default_ports_env_override_and_api_key():
    local = NodeEndpoints.from_env(port_base=9100, env={})
    assert local.predict_url("json") == "http://127.0.0.1:9103/predict"
    assert local.headers() == {}
    env = {"COMPOUND_NODE_URL_LLM": "https://model-abc.api.baseten.co/environments/production/",
           "BASETEN_API_KEY": "k123"}
    prod = NodeEndpoints.from_env(env=env)
    assert prod.async_predict_url("llm") == "https://model-abc.api.baseten.co/environments/production/async_predict"
    assert prod.base_url("tts") == "http://127.0.0.1:8104"
    assert prod.headers() == {"Authorization": "Api-Key k123"}
    with pytest.raises(KeyError, match="no endpoint for node 'chain'"):
        prod.base_url("chain")


def test_voice_speakable_step_drops_repeated_sentences_and_keeps_replies_short():
    from compound.service.chains.voice import MAX_SPOKEN_SENTENCES, speakable

    class _Steps(dict):
        pass

    looping = "I'm so sorry to hear that. " * 10 + "Table for **four** at 7pm? 🎉"
    out = speakable(_Steps(reply={"text": looping}))["text"]
    assert out == "I'm so sorry to hear that. Table for four at 7pm?"
    many = " ".join(f"Sentence number {i}." for i in range(10))
    assert speakable(_Steps(reply={"text": many}))["text"].count(".") == MAX_SPOKEN_SENTENCES
