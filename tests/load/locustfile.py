"""Load tests for the local stack (`compound serve`): each model Truss and the chain service,
sync and async. Run headless, e.g. all targets for 30 s with 4 users:

    locust -f tests/load/locustfile.py --headless -u 4 -r 2 -t 30s --host http://127.0.0.1:8100

`--host` is the chain service; the Trusses are reached on the same port base plus their
offset (llm +1, whisper +2, json +3, tts +4), as `compound serve` lays them out. Override a
target with env COMPOUND_LOAD_URL_<NAME> (e.g. COMPOUND_LOAD_URL_LLM=http://127.0.0.1:9001).
Pick targets by class name (`... LlmUser TtsUser`) or by tag (`--tags llm chain-async`;
tags: llm, whisper, json, tts, chain-sync, chain-async). Locust prints p50/p95/p99,
requests/s and failures per request name; `--csv PREFIX` writes them to files.

Inputs are fixed (no randomness), so two runs send the same requests.
"""
from __future__ import annotations

import base64
import os
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from locust import HttpUser, constant, events, tag, task

# tests/speech.py; imported now, because locust restores sys.path after loading this file
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import speech  # noqa: E402

OFFSETS = {"chain": 0, "llm": 1, "whisper": 2, "json": 3, "tts": 4}

QUESTION = "Please book a table for four people tonight at eight, under the name Ana."
RECORD_SCHEMA = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "party_size": {"type": "integer"}},
    "required": ["name", "party_size"],
    "additionalProperties": False,
}
CHAT_BODY = {"messages": [{"role": "user", "content": "Say hello in three words."}],
             "max_tokens": 12, "temperature": 0}
JSON_BODY = {"schema": RECORD_SCHEMA, "prompt": QUESTION, "max_tokens": 48, "temperature": 0}
TTS_BODY = {"input": "Your table for four is booked for eight tonight.", "response_format": "wav"}
EXTRACT_INPUTS = {"text": QUESTION, "schema": RECORD_SCHEMA, "max_rounds": 1, "max_tokens": 48}
ASYNC_TIMEOUT_S = 120


def target_url(host: str, name: str) -> str:
    override = os.environ.get(f"COMPOUND_LOAD_URL_{name.upper()}")
    if override:
        return override.rstrip("/")
    parts = urlsplit(host)
    port = (parts.port or 80) + OFFSETS[name]
    return urlunsplit((parts.scheme, f"{parts.hostname}:{port}", "", "", "")).rstrip("/")


_AUDIO_B64: list[str] = []


def question_audio_b64() -> str:
    """The question spoken by the bundled Piper voice (deterministic; cached on disk)."""
    if not _AUDIO_B64:
        _AUDIO_B64.append(base64.b64encode(speech.synthesize_wav(QUESTION)).decode())
    return _AUDIO_B64[0]


class _TargetUser(HttpUser):
    abstract = True
    target = "chain"
    wait_time = constant(0.1)

    def on_start(self) -> None:
        self.client.base_url = target_url(self.host, self.target)

    def _post_ok(self, path: str, body: dict, name: str, check=None) -> None:
        with self.client.post(path, json=body, name=name, catch_response=True) as response:
            if response.status_code != 200:
                response.failure(f"HTTP {response.status_code}: {response.text[:200]}")
            elif check is not None and (problem := check(response)):
                response.failure(problem)


class LlmUser(_TargetUser):
    target = "llm"

    @tag("llm")
    @task
    def chat(self) -> None:
        self._post_ok("/predict", CHAT_BODY, "llm /predict",
                      lambda r: None if r.json()["choices"][0]["message"]["content"] else "empty reply")


class WhisperUser(_TargetUser):
    target = "whisper"

    @tag("whisper")
    @task
    def transcribe(self) -> None:
        self._post_ok("/predict", {"audio": question_audio_b64()}, "whisper /predict",
                      lambda r: None if "table" in r.json()["text"].lower() else f"bad transcript {r.text[:100]}")


class JsonUser(_TargetUser):
    target = "json"

    @tag("json")
    @task
    def extract(self) -> None:
        self._post_ok("/predict", JSON_BODY, "json /predict",
                      lambda r: None if isinstance(r.json()["output"].get("party_size"), int) else r.text[:200])


class TtsUser(_TargetUser):
    target = "tts"

    @tag("tts")
    @task
    def speak(self) -> None:
        self._post_ok("/predict", TTS_BODY, "tts /predict",
                      lambda r: None if r.content[:4] == b"RIFF" and len(r.content) > 1000 else "not a WAV")


class ChainSyncUser(_TargetUser):
    target = "chain"

    @tag("chain-sync")
    @task
    def extract_sync(self) -> None:
        self._post_ok("/v1/chains/extract/run", {"inputs": EXTRACT_INPUTS}, "chain extract /run",
                      lambda r: None if r.json()["status"] == "succeeded" else r.text[:200])


class ChainAsyncUser(_TargetUser):
    """Submits a durable job and polls it; the job's end-to-end time is reported as its own
    request name ("chain extract job (submit -> done)")."""

    target = "chain"

    @tag("chain-async")
    @task
    def extract_async(self) -> None:
        started = time.perf_counter()
        with self.client.post("/v1/chains/extract/async", json={"inputs": EXTRACT_INPUTS},
                              name="chain extract /async", catch_response=True) as response:
            if response.status_code != 202:
                response.failure(f"HTTP {response.status_code}: {response.text[:200]}")
                return
            job_id = response.json()["job_id"]
        status, error = "queued", None
        while time.perf_counter() - started < ASYNC_TIMEOUT_S:
            time.sleep(0.25)
            job = self.client.get(f"/v1/jobs/{job_id}", name="chain /v1/jobs/{id}").json()
            status, error = job["status"], job.get("error")
            if status in ("succeeded", "failed", "canceled"):
                break
        elapsed_ms = (time.perf_counter() - started) * 1000
        exception = None if status == "succeeded" else RuntimeError(f"job {job_id} {status}: {error}")
        events.request.fire(request_type="JOB", name="chain extract job (submit -> done)",
                            response_time=elapsed_ms, response_length=0, exception=exception,
                            context={})


@events.init.add_listener
def _only_users_with_tagged_tasks(environment, **_kwargs) -> None:
    """`--tags` filters tasks but Locust keeps user classes left with none (they then crash on
    every spawn); keep only the classes with a task carrying a selected tag."""
    tags = set(getattr(environment.parsed_options, "tags", None) or ())
    if tags:
        environment.user_classes = [
            user for user in environment.user_classes
            if any(tags & getattr(t, "locust_tag_set", set()) for t in user.tasks)]
