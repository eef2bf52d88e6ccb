"""Every bad input (tests/faults/corpus.py) to every real model Truss and to the chain service
-> a 4xx with a message, and the server is still healthy after it (readiness 200)."""
from __future__ import annotations

import httpx
import pytest

from faults.corpus import BY_NODE, Case, cases

pytestmark = pytest.mark.fault

# node -> (where the bad request goes, readiness path)
ROUTES = {"llm": ("/predict", "/v1/models/model"), "whisper": ("/predict", "/v1/models/model"),
          "json": ("/predict", "/v1/models/model"), "tts": ("/predict", "/v1/models/model"),
          "chain": ("/v1/chains/extract/run", "/healthz")}
PARAMS = [pytest.param(node, case, id=f"{node}-{case.id}") for node in BY_NODE for case in cases(node)]


def error_message(response: httpx.Response) -> str:
    """The human-readable reason in a 4xx body: Truss's `{"error"}` or our `{"detail": {"error"}}`."""
    try:
        body = response.json()
    except ValueError:
        return response.text.strip()
    if isinstance(body, dict):
        detail = body.get("detail", body)
        if isinstance(detail, dict):
            return str(detail.get("error") or detail.get("message") or "")
        if isinstance(detail, list):  # FastAPI validation errors
            return "; ".join(str(d.get("msg", d)) for d in detail if isinstance(d, dict))
        return str(detail or body.get("error") or "")
    return str(body)


@pytest.mark.parametrize(("node", "case"), PARAMS)
def test_bad_input_is_a_4xx_with_a_message_and_server_stays_healthy(node: str, case: Case, request):
    url = request.getfixturevalue("stack")["chain"] if node == "chain" else request.getfixturevalue(f"{node}_url")
    path, ready_path = ROUTES[node]
    with httpx.Client(timeout=120) as client:
        response = client.post(f"{url}{path}", content=case.body, headers={"content-type": case.content_type})
        assert 400 <= response.status_code < 500, (
            f"{node} answered {response.status_code} to {case.id} ({case.why}): {response.text[:300]}")
        message = error_message(response)
        assert len(message) >= 5, f"{node}: {case.id} got {response.status_code} without a message: {response.text[:300]}"
        ready = client.get(f"{url}{ready_path}")
        assert ready.status_code == 200, f"{node} not ready after {case.id}: {ready.status_code} {ready.text[:200]}"
