"""All three built-in chains through the chain service's HTTP API, against the real local
stack (`compound serve`'s supervisor: four real Trusses + the chain service), sync and async,
with job webhooks verified by a real receiver that checks the Standard Webhooks signature."""
from __future__ import annotations

import base64
import json

import httpx
import pytest
from standardwebhooks.webhooks import Webhook

from conftest import TEST_CHAIN_WEBHOOK_SECRET
from http_fakes import WebhookReceiver
from speech import synthesize_wav, to_mp3

# Short enough for Baseten's 256 KiB async_predict input limit once base64-encoded.
QUESTION = "Hello, do you have a table for two people tonight?"
BOOKING_TEXT = "Hi, this is Bob. A table for three at eight pm, please. One of us is vegetarian."
FANOUT_TEXT = ("Bob would like a table for two at eight pm, no vegetarians.\n\n"
               "Carol asks for a table for six at noon, two of them are vegetarian.")


def _inputs(chain: str) -> dict:
    if chain == "voice":
        audio = to_mp3(synthesize_wav(QUESTION))
        return {"audio": base64.b64encode(audio).decode(), "max_tokens": 32, "temperature": 0.0}
    if chain == "extract":
        return {"text": BOOKING_TEXT}
    return {"text": FANOUT_TEXT, "split": "paragraphs"}


def _check_outputs(chain: str, outputs: dict) -> None:
    if chain == "voice":
        assert "table" in outputs["transcript"].lower()
        assert outputs["reply_text"].strip()
        assert base64.b64decode(outputs["audio_b64"])[:4] == b"RIFF"
    elif chain == "extract":
        record = outputs["record"]
        assert "bob" in record["name"].lower() and record["party_size"] >= 1
    else:
        names = [r["record"]["name"].lower() for r in outputs["records"]]
        assert "bob" in names[0] and "carol" in names[1]


@pytest.fixture(scope="module")
def chain_client(stack):
    with httpx.Client(base_url=stack["chain"], timeout=300) as client:
        yield client


@pytest.mark.parametrize("chain", ["voice", "extract", "fanout"])
def test_sync_run_against_the_real_stack(chain_client, chain):
    response = chain_client.post(f"/v1/chains/{chain}/run", json={"inputs": _inputs(chain)})
    body = response.json()
    assert response.status_code == 200, body
    assert body["status"] == "succeeded"
    final = {step["name"]: step["status"] for step in body["trace"]}  # last round wins
    assert final and set(final.values()) <= {"succeeded", "skipped"}, final
    _check_outputs(chain, body["outputs"])


@pytest.mark.parametrize("chain", ["voice", "extract", "fanout"])
def test_async_job_against_the_real_stack_delivers_a_verified_webhook(chain_client, chain):
    with WebhookReceiver() as receiver:
        response = chain_client.post(f"/v1/chains/{chain}/async",
                                     json={"inputs": _inputs(chain), "webhook_url": receiver.url + "/hook"})
        assert response.status_code == 202, response.text
        job_id = response.json()["job_id"]
        [hook] = receiver.wait_for(1, timeout_s=300)
    payload = Webhook(TEST_CHAIN_WEBHOOK_SECRET).verify(hook.body, hook.headers)
    assert payload["type"] == "job.succeeded" and payload["data"]["job_id"] == job_id
    _check_outputs(chain, payload["data"]["outputs"])
    with pytest.raises(Exception):  # a wrong secret does not verify
        Webhook("whsec_" + base64.b64encode(b"another-secret-of-32-bytes-long!").decode()).verify(
            hook.body, hook.headers)
    job = chain_client.get(f"/v1/jobs/{job_id}").json()
    assert job["status"] == "succeeded"
    assert job["webhook"][0]["webhook_id"] == hook.headers["webhook-id"]


def test_nodes_called_through_async_predict_and_signed_baseten_callbacks(chain_client, stack):
    """node_modes makes the chain call real Trusses via /async_predict; the run resumes
    on their (signature-verified) webhooks to /v1/callbacks/baseten."""
    audio = base64.b64encode(to_mp3(synthesize_wav(BOOKING_TEXT))).decode()
    response = chain_client.post("/v1/chains/extract/run", json={
        "inputs": {"audio": audio}, "node_modes": {"transcribe": "async", "extract": "async"}})
    body = response.json()
    assert response.status_code == 200, body
    assert "bob" in body["outputs"]["record"]["name"].lower()


def test_node_modes_must_name_truss_nodes(chain_client):
    response = chain_client.post("/v1/chains/extract/run", json={
        "inputs": {"text": BOOKING_TEXT}, "node_modes": {"check": "async"}})
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert detail["field"] == "node_modes.check" and "Truss nodes" in detail["error"]
    response = chain_client.post("/v1/chains/extract/run", json={
        "inputs": {"text": BOOKING_TEXT}, "node_modes": {"extract": "sometimes"}})
    assert response.status_code == 422 and "node_modes" in json.dumps(response.json())
