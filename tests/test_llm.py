"""LLM Truss: OpenAI chat completions on the bundled SmolLM2 GGUF (llama.cpp, CPU).

In-process tests drive `compound_models.llm` with the real model (loaded once per
session); `test_http_*` tests go through the real Truss server (`llm_url` fixture).
TensorRT-LLM cannot run here: its tests use a fake `tensorrt_llm` module (named "fake").
"""
from __future__ import annotations

import asyncio
import sys
import types
from pathlib import Path

import httpx
import pytest

from compound_models.errors import InputError
from compound_models.llm import metrics, schema, sse
from compound_models.llm.backend import (
    BACKEND_ENV, Finished, GenerationRequest, LLMSettings, TextDelta,
    resolve_backend_name,
)
from compound_models.llm.service import ChatService

FRANCE = [{"role": "user", "content": "What is the capital of France? Answer in one word."}]
# Greedy decoding of this prompt runs for hundreds of tokens: a long generation to cut.
LONG = [{"role": "user", "content": "Count from 1 to 1000, separated by commas."}]


def _wait_for(predicate, timeout_s: float = 60.0, poll_s: float = 0.05):
    """Poll state until `predicate()` holds (a deadline against hangs, not a timing assert)."""
    import time

    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached")
        time.sleep(poll_s)


async def _await_for(predicate, timeout_s: float = 60.0, poll_s: float = 0.05):
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached")
        await asyncio.sleep(poll_s)


@pytest.fixture(scope="session")
def service() -> ChatService:
    svc = ChatService.from_config({"model_metadata": {"backend": "llamacpp", "n_threads": 2}})
    yield svc
    svc.backend.close()


def _gen(messages, max_tokens=16, **kw) -> GenerationRequest:
    return GenerationRequest(messages=messages, max_tokens=max_tokens, temperature=kw.get("temperature", 0.0),
                             top_p=1.0, stop=kw.get("stop", []), seed=0)


# --- request validation -----------------------------------------------------------------

OK = {"messages": [{"role": "user", "content": "hi"}]}


@pytest.mark.parametrize("body, field", [
    ({}, "messages"),
    ({"messages": []}, "messages"),
    ({"messages": "hello"}, "messages"),
    ({"messages": [{"role": "user"}]}, "messages.0.content"),
    ({"messages": [{"content": "hi"}]}, "messages.0.role"),
    ({"messages": [{"role": "wizard", "content": "hi"}]}, "messages.0.role"),
    ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]}, "messages.0.content"),
    ({**OK, "max_tokens": 0}, "max_tokens"),
    ({**OK, "max_tokens": -5}, "max_tokens"),
    ({**OK, "max_tokens": "many"}, "max_tokens"),
    ({**OK, "temperature": -0.1}, "temperature"),
    ({**OK, "temperature": 2.5}, "temperature"),
    ({**OK, "top_p": 0}, "top_p"),
    ({**OK, "top_p": 1.5}, "top_p"),
    ({**OK, "stop": ["a", "b", "c", "d", "e"]}, "stop"),
    ({**OK, "stream": "yes"}, "stream"),
    ({**OK, "n": 2}, "n"),
])
def test_bad_request_names_field(body, field):
    with pytest.raises(InputError) as info:
        schema.parse_request(body)
    assert info.value.field == field, info.value.message
    assert info.value.status_code == 400


@pytest.mark.parametrize("body", [None, [], "text", 3])
def test_non_object_body_rejected(body):
    with pytest.raises(InputError) as info:
        schema.parse_request(body)
    assert info.value.field == "body"


def test_valid_request_normalizes():
    req = schema.parse_request({
        "model": "anything", "user": "ignored-field",
        "messages": [{"role": "developer", "content": "be brief"},
                     {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}],
        "max_completion_tokens": 7, "temperature": 0, "top_p": 1, "stop": "x", "stream": True,
        "stream_options": {"include_usage": True},
    })
    assert [m.normalized() for m in req.messages] == [
        {"role": "system", "content": "be brief"}, {"role": "user", "content": "ab"}]
    assert req.requested_max_tokens == 7 and req.stop == ["x"] and req.include_usage


# --- chat template ------------------------------------------------------------------------

def test_chat_template_is_the_ggufs_own(service):
    """The prompt comes from the GGUF's tokenizer.chat_template, rendered as HF does."""
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    backend = service.backend
    template = backend.llm.metadata["tokenizer.chat_template"]
    messages = [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Hi"},
                {"role": "assistant", "content": "Hello."}, {"role": "user", "content": "Bye"}]
    expected = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True).from_string(template).render(
        messages=messages, add_generation_prompt=True, bos_token="<|im_start|>", eos_token="<|im_end|>")
    assert backend.render_prompt(messages) == expected
    # SmolLM2's template adds its default system prompt when none is given.
    assert backend.render_prompt([{"role": "user", "content": "Hi"}]) == (
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
        "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n")
    # ...and it is the handler create_chat_completion uses (not a guessed built-in format).
    assert backend.llm.chat_handler is not None


async def test_model_is_fed_exactly_the_rendered_template(service):
    backend = service.backend
    messages = [{"role": "user", "content": "Name a colour."}]
    expected_ids = backend.llm.tokenize(backend.render_prompt(messages).encode(), add_bos=False, special=True)
    events = [e async for e in backend.stream(_gen(messages, max_tokens=2))]
    finished = events[-1]
    assert isinstance(finished, Finished) and finished.prompt_tokens == len(expected_ids)
    # The context's evaluated tokens start with exactly the template's tokens.
    evaluated = list(backend.llm.input_ids[: len(expected_ids)])
    assert evaluated == expected_ids


# --- generation (in process) --------------------------------------------------------------

async def test_paris_in_process(service):
    out = await service.respond({"messages": FRANCE, "temperature": 0, "seed": 0, "max_tokens": 32})
    assert "Paris" in out["choices"][0]["message"]["content"]
    assert out["object"] == "chat.completion" and out["choices"][0]["finish_reason"] == "stop"
    usage = out["usage"]
    assert usage["prompt_tokens"] == service.backend.count_prompt_tokens(FRANCE)
    assert 0 < usage["completion_tokens"] <= 32
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


async def test_same_seed_same_sampled_text(service):
    body = {"messages": [{"role": "user", "content": "Write a short poem about rain."}],
            "temperature": 1.2, "seed": 1234, "max_tokens": 12}
    a = await service.respond(body)
    b = await service.respond(body)
    assert a["choices"][0]["message"]["content"] == b["choices"][0]["message"]["content"]


async def test_max_tokens_limits_and_reports_length(service):
    out = await service.respond({"messages": LONG, "temperature": 0, "max_tokens": 5})
    assert out["choices"][0]["finish_reason"] == "length"
    assert out["usage"]["completion_tokens"] == 5


async def test_stop_sequence(service):
    out = await service.respond({"messages": LONG, "temperature": 0, "max_tokens": 60, "stop": ["5"]})
    text = out["choices"][0]["message"]["content"]
    assert out["choices"][0]["finish_reason"] == "stop" and "5" not in text and "4" in text


async def test_sse_stream_in_process(service):
    req, gen, prompt_tokens = await service.prepare(
        {"messages": FRANCE, "temperature": 0, "stream": True, "stream_options": {"include_usage": True}})
    body = "".join([e async for e in service.sse_events(req, gen)])
    events = sse.parse_events(body)
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    content = [c["choices"][0]["delta"]["content"] for c in chunks if c["choices"] and c["choices"][0]["delta"].get("content")]
    assert len(content) >= 2 and "Paris" in "".join(content)
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["prompt_tokens"] == prompt_tokens
    assert len({c["id"] for c in chunks}) == 1


async def test_prompt_longer_than_context_is_400(service):
    window = service.backend.context_window
    huge = [{"role": "user", "content": "word " * (window + 10)}]
    with pytest.raises(InputError) as info:
        await service.respond({"messages": huge})
    assert info.value.field == "messages" and str(window) in info.value.message


async def test_max_tokens_beyond_context_is_400(service):
    with pytest.raises(InputError) as info:
        await service.respond({"messages": FRANCE, "max_tokens": service.backend.context_window})
    assert info.value.field == "max_tokens"


async def test_abandoned_stream_stops_generation_and_frees_model(service):
    backend = service.backend
    before = backend.stats()
    stream = backend.stream(_gen(LONG, max_tokens=2000))
    first = await stream.__anext__()
    assert isinstance(first, TextDelta)
    await stream.aclose()  # what a disconnect does to the SSE generator
    await _await_for(lambda: backend.stats()["cancelled_running"] == before["cancelled_running"] + 1)
    after = backend.stats()
    assert after["active"] == 0 and after["waiting"] == 0
    assert after["completed"] == before["completed"]
    # The model is free: the next request is served to completion.
    out = await service.respond({"messages": FRANCE, "temperature": 0, "max_tokens": 16})
    assert "Paris" in out["choices"][0]["message"]["content"]
    assert backend.stats()["completed"] == before["completed"] + 1


async def test_sse_generator_close_cancels_backend(service):
    backend = service.backend
    before = backend.stats()
    req, gen, _ = await service.prepare({"messages": LONG, "temperature": 0, "max_tokens": 2000, "stream": True})
    events = service.sse_events(req, gen)
    async for event in events:
        if '"content":"' in event and '"content":""' not in event:
            break
    await events.aclose()
    await _await_for(lambda: backend.stats()["cancelled_running"] == before["cancelled_running"] + 1)
    assert backend.stats()["active"] == 0


async def test_request_cancelled_while_queued_never_runs(service):
    backend = service.backend
    before = backend.stats()
    running = backend.stream(_gen(LONG, max_tokens=2000))
    await running.__anext__()  # A holds the model
    queued = backend.stream(_gen(FRANCE, max_tokens=8))
    task = asyncio.ensure_future(queued.__anext__())  # B submitted, waits behind A
    await _await_for(lambda: backend.stats()["waiting"] == 1)
    task.cancel()  # B's client leaves while B is queued
    with pytest.raises(asyncio.CancelledError):
        await task
    await running.aclose()
    await _await_for(lambda: backend.stats()["waiting"] == 0 and backend.stats()["active"] == 0)
    after = backend.stats()
    assert after["cancelled_queued"] == before["cancelled_queued"] + 1
    assert after["started"] == before["started"] + 1  # only A ever touched the model


async def test_concurrent_requests_served_fifo(service):
    """8 concurrent requests on one llama.cpp context: all served, in arrival order."""
    finished_order = []

    async def one(i):
        out = await service.respond({"messages": [{"role": "user", "content": f"Say the number {i}."}],
                                     "temperature": 0, "max_tokens": 6})
        finished_order.append(i)
        return out

    tasks = []
    for i in range(8):
        tasks.append(asyncio.ensure_future(one(i)))
        await asyncio.sleep(0)  # let task i submit before i+1
    results = await asyncio.gather(*tasks)
    assert all(r["usage"]["completion_tokens"] > 0 for r in results)
    assert finished_order == list(range(8))
    assert service.backend.stats()["active"] == 0


async def test_non_stream_request_cancelled_when_client_disconnects(service):
    backend = service.backend
    before = backend.stats()
    gone = asyncio.Event()

    async def is_disconnected():
        return gone.is_set()

    task = asyncio.ensure_future(service.respond(
        {"messages": LONG, "temperature": 0, "max_tokens": 2000}, is_disconnected=is_disconnected))
    await _await_for(lambda: backend.stats()["started"] == before["started"] + 1)
    gone.set()
    with pytest.raises(InputError) as info:
        await task
    assert info.value.status_code == 499
    await _await_for(lambda: backend.stats()["cancelled_running"] == before["cancelled_running"] + 1)
    assert backend.stats()["active"] == 0


# --- backend selection, weights -------------------------------------------------------------

def test_backend_selection(monkeypatch):
    monkeypatch.delenv(BACKEND_ENV, raising=False)
    assert LLMSettings.from_config({"model_metadata": {"backend": "trtllm"}}).backend == "trtllm"
    monkeypatch.setenv(BACKEND_ENV, "llamacpp")
    assert LLMSettings.from_config({"model_metadata": {"backend": "trtllm"}}).backend == "llamacpp"
    monkeypatch.setenv(BACKEND_ENV, "vllm")
    with pytest.raises(ValueError, match="vllm"):
        LLMSettings.from_config({})
    monkeypatch.delenv(BACKEND_ENV)
    # No GPU on this box: auto means llama.cpp.
    assert resolve_backend_name(LLMSettings.from_config({"model_metadata": {"backend": "auto"}})) == "llamacpp"


def test_default_weights_are_bundled_and_offline(monkeypatch):
    import huggingface_hub

    from compound_models import bundled
    from compound_models.llm.weights import resolve_gguf

    def no_network(*a, **k):
        raise AssertionError("network call")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", no_network)
    assert resolve_gguf(None) == bundled.smollm2_gguf()


def test_hub_weights_spec_downloads_with_fake_hub(monkeypatch, tmp_path):
    import huggingface_hub

    from compound_models.llm.weights import resolve_gguf

    calls = []

    def fake_download(**kwargs):
        calls.append(kwargs)
        path = tmp_path / kwargs["filename"]
        path.write_bytes(b"GGUF")
        return str(path)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    spec = {"repo_id": "org/model-GGUF", "filename": "m.gguf", "revision": "abc123"}
    assert resolve_gguf(spec, secrets={"hf_access_token": "tok"}) == tmp_path / "m.gguf"
    assert calls[0]["repo_id"] == "org/model-GGUF" and calls[0]["revision"] == "abc123"
    assert calls[0]["token"] == "tok"
    # Pre-fetched by Truss model_cache into local_dir: used without downloading.
    calls.clear()
    assert resolve_gguf({**spec, "local_dir": str(tmp_path)}) == tmp_path / "m.gguf"
    assert calls == []


# --- TensorRT-LLM (no GPU here) ---------------------------------------------------------------

def test_trtllm_refuses_engine_without_manifest(tmp_path):
    """Real engines check: a dir that was not built by `compound engines build` is refused."""
    from compound_models.engines.manifest import EngineMismatch
    from compound_models.llm.trtllm_backend import TrtLlmBackend

    backend = TrtLlmBackend(LLMSettings(backend="trtllm", trtllm={"engine_dir": str(tmp_path)}))
    with pytest.raises(EngineMismatch, match="engine_manifest.json"):
        backend.load()


def test_trtllm_needs_an_engine_location():
    from compound_models.llm.trtllm_backend import TrtLlmBackend
    from compound_models.llm.weights import WeightsError

    with pytest.raises(WeightsError, match="engine_dir"):
        TrtLlmBackend(LLMSettings(backend="trtllm")).load()


class _FakeOutput:
    def __init__(self):
        self.text, self.token_ids, self.finish_reason, self._last = "", [], None, 0

    @property
    def text_diff(self):
        diff, self._last = self.text[self._last:], len(self.text)
        return diff


class _FakeResult:
    """Stands in for tensorrt_llm's streaming GenerationResult."""

    def __init__(self, pieces, finish_reason):
        self.pieces, self.final_reason = pieces, finish_reason
        self.outputs = [_FakeOutput()]
        self.finished = False
        self.aborted = False

    def __aiter__(self):
        return self._iter()

    async def _iter(self):
        for i, piece in enumerate(self.pieces):
            out = self.outputs[0]
            out.text += piece
            out.token_ids.append(100 + i)
            if i == len(self.pieces) - 1:
                out.finish_reason, self.finished = self.final_reason, True
            yield self

    def abort(self):
        self.aborted = True


@pytest.fixture
def fake_trtllm(monkeypatch, tmp_path):
    """A fake `tensorrt_llm` (LLM + SamplingParams) and tokenizer; the real backend code runs on them."""
    from compound_models.llm import trtllm_backend

    made = {"llms": [], "params": [], "results": [], "verified": []}

    class SamplingParams:
        def __init__(self, **kwargs):
            self.kwargs = kwargs
            made["params"].append(kwargs)

    class LLM:
        def __init__(self, model, tokenizer, **kwargs):
            self.model, self.tokenizer = model, tokenizer
            made["llms"].append(self)

        def generate_async(self, inputs, sampling_params, streaming=False):
            assert streaming is True and isinstance(inputs, list)
            result = _FakeResult(["Pa", "ris", "."], "stop")
            made["results"].append(result)
            return result

    fake = types.ModuleType("tensorrt_llm")
    fake.LLM, fake.SamplingParams = LLM, SamplingParams
    monkeypatch.setitem(sys.modules, "tensorrt_llm", fake)
    monkeypatch.setitem(sys.modules, "tensorrt_llm._tensorrt_engine", types.SimpleNamespace(LLM=LLM))

    class Tokenizer:
        chat_template = "{% for m in messages %}<{{m.role}}>{{m.content}}{% endfor %}<assistant>"

        def apply_chat_template(self, messages, tokenize, add_generation_prompt):
            return "".join(f"<{m['role']}>{m['content']}" for m in messages) + "<assistant>"

        def encode(self, text, add_special_tokens):
            return list(range(len(text.split(">"))))

    monkeypatch.setattr(trtllm_backend, "_load_tokenizer", lambda source, token: Tokenizer())
    import compound_models.engines.manifest as manifest

    monkeypatch.setattr(manifest, "verify_engine_for_this_gpu", lambda d: made["verified"].append(Path(d)))
    (tmp_path / "config.json").write_text('{"build_config": {"max_seq_len": 2048}}')
    return made, tmp_path


async def test_trtllm_backend_streams_with_fake_tensorrt_llm(fake_trtllm):
    made, engine_dir = fake_trtllm
    svc = ChatService.from_config({"model_metadata": {"backend": "trtllm", "trtllm": {"engine_dir": str(engine_dir)}}})
    assert svc.backend.name == "trtllm" and made["verified"] == [engine_dir]
    assert svc.backend.context_window == 2048
    out = await svc.respond({"messages": FRANCE, "temperature": 0, "max_tokens": 9, "seed": 3})
    assert out["choices"][0]["message"]["content"] == "Paris."
    assert out["usage"]["completion_tokens"] == 3
    assert made["params"][-1] == {"max_tokens": 9, "top_p": None, "stop": None, "top_k": 1, "seed": 3}
    assert not made["results"][-1].aborted


async def test_trtllm_abandoned_stream_aborts_with_fake_tensorrt_llm(fake_trtllm):
    made, engine_dir = fake_trtllm
    svc = ChatService.from_config({"model_metadata": {"backend": "trtllm", "trtllm": {"engine_dir": str(engine_dir)}}})
    stream = svc.backend.stream(_gen(FRANCE, temperature=0.7))
    assert (await stream.__anext__()).text == "Pa"
    await stream.aclose()
    assert made["results"][-1].aborted
    assert made["params"][-1]["temperature"] == 0.7


# --- through the real Truss server --------------------------------------------------------------


def _chat(url, body, path="/v1/chat/completions", **kw):
    return httpx.post(url + path, json=body, timeout=120, **kw)


def test_http_paris(llm_url):
    r = _chat(llm_url, {"model": "smollm2", "messages": FRANCE, "temperature": 0, "seed": 0})
    assert r.status_code == 200, r.text
    body = r.json()
    assert "Paris" in body["choices"][0]["message"]["content"]
    assert body["usage"]["total_tokens"] == body["usage"]["prompt_tokens"] + body["usage"]["completion_tokens"]


def test_http_predict_takes_the_same_body(llm_url):
    r = _chat(llm_url, {"messages": FRANCE, "temperature": 0, "seed": 0}, path="/v1/models/model:predict")
    assert r.status_code == 200, r.text
    assert "Paris" in r.json()["choices"][0]["message"]["content"]


def test_http_stream(llm_url):
    with httpx.stream("POST", llm_url + "/v1/chat/completions", timeout=120,
                      json={"messages": FRANCE, "temperature": 0, "stream": True}) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        body = r.read().decode()
    events = sse.parse_events(body)
    assert events[-1] == "[DONE]"
    content = [e["choices"][0]["delta"].get("content") for e in events[:-1] if e["choices"]]
    assert len([c for c in content if c]) >= 2 and "Paris" in "".join(c or "" for c in content)


@pytest.mark.parametrize("body, field", [
    ({"messages": []}, "messages"),
    ({"messages": [{"role": "robot", "content": "x"}]}, "messages.0.role"),
    ({**OK, "max_tokens": 0}, "max_tokens"),
    ({**OK, "temperature": 3}, "temperature"),
    ({**OK, "top_p": 0}, "top_p"),
    ({"messages": [{"role": "user", "content": "word " * 9000}]}, "messages"),
])
def test_http_bad_input_is_400_naming_field(llm_url, body, field):
    for path in ("/v1/chat/completions", "/v1/models/model:predict"):
        r = _chat(llm_url, body, path=path)
        assert r.status_code == 400, r.text
        assert field in r.text


def test_http_invalid_json_is_400(llm_url):
    r = httpx.post(llm_url + "/v1/chat/completions", content=b"{not json", timeout=30,
                   headers={"content-type": "application/json"})
    assert r.status_code == 400


def test_http_openai_client(llm_url):
    openai = pytest.importorskip("openai")
    client = openai.OpenAI(base_url=llm_url + "/v1", api_key="unused")
    out = client.chat.completions.create(model="smollm2", messages=FRANCE, temperature=0, seed=0, max_tokens=32)
    assert "Paris" in out.choices[0].message.content and out.usage.completion_tokens > 0
    pieces = []
    usage = None
    for chunk in client.chat.completions.create(model="smollm2", messages=FRANCE, temperature=0, seed=0,
                                                stream=True, stream_options={"include_usage": True}):
        if chunk.choices and chunk.choices[0].delta.content:
            pieces.append(chunk.choices[0].delta.content)
        usage = chunk.usage or usage
    assert len(pieces) >= 2 and "Paris" in "".join(pieces)
    assert usage is not None and usage.completion_tokens >= len(pieces)
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="smollm2", messages=FRANCE, temperature=5)


def _metrics(url) -> dict:
    return metrics.parse(httpx.get(url + "/metrics", timeout=30, follow_redirects=True).text)


def test_http_client_disconnect_stops_generation(llm_url):
    cancelled_key = 'compound_llm_generations_total{outcome="cancelled"}'
    tokens_key = "compound_llm_generated_tokens_total"
    start = _metrics(llm_url)
    before = start.get(cancelled_key, 0.0)
    with httpx.Client(timeout=120) as client:
        with client.stream("POST", llm_url + "/v1/chat/completions",
                           json={"messages": LONG, "temperature": 0, "max_tokens": 3000, "stream": True}) as r:
            for line in r.iter_lines():
                if '"content":"' in line and '"content":""' not in line:
                    break  # first real token arrived; now hang up
    # Connection closed. The server notices, stops decoding and frees the model.
    _wait_for(lambda: _metrics(llm_url).get(cancelled_key, 0.0) == before + 1, poll_s=0.2)
    _wait_for(lambda: _metrics(llm_url)["compound_llm_active_generations"] == 0.0, poll_s=0.2)
    # It stopped early: far fewer than the 3000 requested tokens were decoded.
    assert _metrics(llm_url)[tokens_key] - start.get(tokens_key, 0.0) < 3000
    r = _chat(llm_url, {"messages": FRANCE, "temperature": 0, "max_tokens": 16})
    assert r.status_code == 200 and "Paris" in r.json()["choices"][0]["message"]["content"]


def test_http_concurrent_streams_all_served(llm_url):
    async def one(client, i):
        r = await client.post("/v1/chat/completions", json={
            "messages": [{"role": "user", "content": f"Say the number {i}."}],
            "temperature": 0, "max_tokens": 8, "stream": True})
        return r.status_code, sse.parse_events(r.text)

    async def main():
        async with httpx.AsyncClient(base_url=llm_url, timeout=120) as client:
            return await asyncio.gather(*(one(client, i) for i in range(8)))

    for status, events in asyncio.run(main()):
        assert status == 200 and events[-1] == "[DONE]"
