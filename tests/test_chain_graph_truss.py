"""The chain Truss (chains/chain_truss): what `truss push` would upload, and its predict contract.

Predict is exercised in-process against fake model nodes here (errors, streaming); the Truss
served by Truss's own server against the real models is in tests/test_chains_builtin.py.
"""
from __future__ import annotations

import base64

import pytest
import yaml
from fastapi import HTTPException
from fastapi.responses import StreamingResponse

from http_fakes import Chunks, FakeNode, Status
from model_calls import truss_model_class
from compound.paths import REPO_ROOT

CHAIN_TRUSS = REPO_ROOT / "chains" / "chain_truss"


def test_gathered_truss_bundles_the_compound_package():
    from truss.truss_handle.truss_handle import TrussHandle

    gathered = TrussHandle(CHAIN_TRUSS).gather()
    packages = gathered / "packages"
    for needed in ("compound/__init__.py", "compound/services.py", "compound/paths.py",
                   "compound/service/__init__.py", "compound/service/executor.py",
                   "compound/service/graph.py", "compound/service/clients.py",
                   "compound/service/endpoints.py", "compound/service/callbacks.py",
                   "compound/service/chains/__init__.py", "compound/service/chains/extract.py"):
        assert (packages / needed).is_file(), needed
    config = yaml.safe_load((gathered / "config.yaml").read_text())
    assert config.get("external_package_dirs") in (None, [])  # gathered: nothing left outside
    # What the executor imports must be in the image's requirements.
    reqs = " ".join(config["requirements"])
    for dist in ("httpx", "pydantic", "tenacity", "jsonschema"):
        assert dist in reqs


def _load_model_class():
    return truss_model_class(CHAIN_TRUSS, "chain_truss_model")


def make_model(monkeypatch, urls: dict):
    for node in ("llm", "whisper", "json", "tts"):
        monkeypatch.delenv(f"COMPOUND_NODE_URL_{node.upper()}", raising=False)
    config = yaml.safe_load((CHAIN_TRUSS / "config.yaml").read_text())
    config["model_metadata"]["node_urls"] = {"whisper": "http://127.0.0.1:9"}
    secrets = {f"compound_node_url_{k}": v for k, v in urls.items()}
    model = _load_model_class()(config=config, secrets=secrets)
    model.load()
    return model


async def test_fake_json_chain_truss_predict_runs_extract(monkeypatch):
    record = {"name": "Bob", "party_size": 2, "time": "8 pm", "vegetarian": 0}
    with FakeNode(lambda body, n: {"output": record}) as js:
        model = make_model(monkeypatch, {"json": js.url})
        out = await model.predict({"chain": "extract", "input": {"text": "Two at 8 for Bob"}})
    assert out["status"] == "succeeded" and out["outputs"]["record"] == record
    assert [t["name"] for t in out["trace"]] == ["transcribe", "extract", "check"]


@pytest.mark.parametrize("body, status, message", [
    ({"chain": "nope", "input": {}}, 404, "unknown chain 'nope'; available: extract, fanout, voice"),
    ({"input": {}}, 400, "'chain' (string) is required"),
    ({"chain": "extract", "input": "text"}, 400, "'input' must be an object"),
    ({"chain": "extract", "input": {"text": "a", "audio": "AAAA"}}, 422, "exactly one of 'audio'"),
    ({"chain": "extract", "input": {}, "extra": 1}, 400, "unknown field(s) ['extra']"),
    ({"chain": "extract", "input": {"text": "a"}, "stream": True}, 400, "cannot stream"),
])
async def test_chain_truss_bad_requests_are_4xx(monkeypatch, body, status, message):
    model = make_model(monkeypatch, {})
    with pytest.raises(HTTPException) as info:
        await model.predict(body)
    assert info.value.status_code == status
    assert message in info.value.detail["error"]


async def test_fake_json_chain_truss_node_failure_is_502_naming_the_node(monkeypatch):
    with FakeNode(lambda body, n: Status(500, "model crashed")) as js:
        model = make_model(monkeypatch, {"json": js.url})
        import compound.service.chains.extract as extract
        monkeypatch.setattr(extract.CHAIN.node("extract").retry, "initial_delay_s", 0.01)
        with pytest.raises(HTTPException) as info:
            await model.predict({"chain": "extract", "input": {"text": "x"}})
    assert info.value.status_code == 502
    detail = info.value.detail
    assert detail["failed_step"] == "extract"
    assert "node 'extract' failed after 3 attempt(s): 5xx: HTTP 500" in detail["error"]
    assert "model crashed" in detail["error"]


async def test_fake_nodes_chain_truss_streams_voice(monkeypatch):
    llm_reply = {"choices": [{"message": {"content": "See you at seven."}}]}
    with FakeNode(lambda b, n: {"text": "table at seven"}) as wh, FakeNode(lambda b, n: llm_reply) as llm, \
            FakeNode(lambda b, n: Chunks([b"RIFF-a", b"-b"])) as tts:
        model = make_model(monkeypatch, {"whisper": wh.url, "llm": llm.url, "tts": tts.url})
        response = await model.predict({"chain": "voice", "stream": True,
                                        "input": {"audio": base64.b64encode(b"x").decode()}})
        assert isinstance(response, StreamingResponse)
        body = b"".join([c async for c in response.body_iterator])
    assert body == b"RIFF-a-b"
    assert tts.calls[0]["input"] == "See you at seven." and tts.calls[0]["stream"] is True
