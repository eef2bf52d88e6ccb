"""Session-wide fixtures: the real local stack, served by Truss's own server.

Every model Truss is started at most once per test session (lazily, on first use) on a
free port base, through the same supervisor `compound serve` uses.
"""
from __future__ import annotations

import base64
from pathlib import Path

import pytest

from compound.runtime.supervisor import Stack, find_free_port_base

TEST_BASETEN_WEBHOOK_SECRET = "test-baseten-webhook-secret"
# Standard Webhooks secret the chain service signs job webhooks with ("whsec_" + base64)
TEST_CHAIN_WEBHOOK_SECRET = "whsec_" + base64.b64encode(b"compound-test-webhook-secret-32b").decode()


@pytest.fixture(scope="session")
def stack_state_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("compound-state")


@pytest.fixture(scope="session")
def local_stack(stack_state_dir):
    log_path = stack_state_dir / "stack.log"
    log_file = log_path.open("a", buffering=1)

    def sink(name: str, line: str) -> None:
        log_file.write(f"[{name}] {line}\n")

    stack = Stack(
        port_base=find_free_port_base(),
        log_sink=sink,
        env={
            "COMPOUND_STATE_DIR": str(stack_state_dir),
            "COMPOUND_BASETEN_WEBHOOK_SECRET": TEST_BASETEN_WEBHOOK_SECRET,
            "COMPOUND_WEBHOOK_SECRET": TEST_CHAIN_WEBHOOK_SECRET,
            # dev settings of the chain service: local receivers are allowed
            "COMPOUND_ALLOW_PRIVATE_WEBHOOKS": "1",
        },
        ready_timeout_s=300,
    )
    yield stack
    stack.stop()
    log_file.close()


def _service_url(stack: Stack, name: str) -> str:
    return stack.start([name])[name]


@pytest.fixture(scope="session")
def llm_url(local_stack) -> str:
    return _service_url(local_stack, "llm")


@pytest.fixture(scope="session")
def whisper_url(local_stack) -> str:
    return _service_url(local_stack, "whisper")


@pytest.fixture(scope="session")
def json_url(local_stack) -> str:
    return _service_url(local_stack, "json")


@pytest.fixture(scope="session")
def tts_url(local_stack) -> str:
    return _service_url(local_stack, "tts")


@pytest.fixture(scope="session")
def stack(local_stack) -> dict:
    """All four Trusses and the chain service: name -> base URL."""
    return local_stack.start([])
