"""Chain plugin for the fault tests (COMPOUND_CHAIN_PLUGINS=<this file>): one truss node on the
real echo Truss (node `echo`, URL from COMPOUND_NODE_URL_ECHO), with and without retries."""
from __future__ import annotations

from pydantic import BaseModel, Field

from compound.service.graph import NO_RETRY, Chain, Node, RetryPolicy


class EchoInput(BaseModel):
    sleep_s: float = Field(0.0, ge=0, le=30)
    tag: str = ""


def _node(retry: RetryPolicy) -> Node:
    return Node.truss("echo", "echo", request=lambda s: {"sleep_s": s.input.sleep_s, "tag": s.input.tag},
                      timeout_s=60, retry=retry)


def _output(steps: dict, _input: BaseModel) -> dict:
    return {"echo": steps["echo"]}


# Retries cover a node restart: waits 0.5, 1, 2, 2, ... s (about 16 s over 10 attempts).
RESTART_RETRY = RetryPolicy(attempts=10, initial_delay_s=0.5, max_delay_s=2.0,
                            retry_on={"connect", "5xx", "timeout"})

CHAINS = {
    "fault_echo_no_retry": Chain("fault_echo_no_retry", EchoInput, [_node(NO_RETRY)], _output),
    "fault_echo_retry": Chain("fault_echo_retry", EchoInput, [_node(RESTART_RETRY)], _output),
}
