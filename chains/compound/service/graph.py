"""Chain definitions: a chain is a DAG of nodes (Truss model calls, code steps, human steps).

A chain reads top to bottom in one screen, e.g.

    Chain("voice", input_model=VoiceInput, output=assemble, nodes=[
        Node.truss("transcribe", "whisper", request=lambda s: {"audio": s.input.audio}, ...),
        Node.truss("reply", "llm", depends_on=["transcribe"], request=..., parse=...),
        Node.code("speakable", clean_text, depends_on=["reply"]),
        Node.truss("speak", "tts", depends_on=["speakable"], stream=True, ...),
    ], stream_node="speak")

Nodes whose dependencies are done run concurrently; the executor (executor.py) does the rest.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Awaitable, Callable, Literal, Optional, Union

from pydantic import BaseModel, Field, ValidationError, field_validator

NodeKind = Literal["truss", "code", "human"]
CallMode = Literal["sync", "async"]
# Why a node attempt failed; RetryPolicy.retry_on picks which of these are retried.
ERROR_KINDS = ("timeout", "connect", "5xx", "4xx", "schema", "code", "config")


class RetryPolicy(BaseModel):
    attempts: int = Field(3, ge=1, le=20)
    initial_delay_s: float = Field(0.5, ge=0)
    max_delay_s: float = Field(8.0, ge=0)
    retry_on: set[str] = Field(default_factory=lambda: {"timeout", "connect", "5xx", "schema"})

    @field_validator("retry_on")
    @classmethod
    def _known_kinds(cls, value: set[str]) -> set[str]:
        unknown = value - set(ERROR_KINDS)
        if unknown:
            raise ValueError(f"unknown error kinds {sorted(unknown)}; valid: {list(ERROR_KINDS)}")
        return value


NO_RETRY = RetryPolicy(attempts=1)


class NodeError(Exception):
    """One failed attempt of a node, classified so the retry policy can decide."""

    def __init__(self, kind: str, message: str):
        super().__init__(f"{kind}: {message}")
        self.kind = kind
        self.message = message


class CheckFailed(Exception):
    """Raised by a code step whose business checks failed; `failed` are the facts, in words.

    With `Node.repair`, the executor re-runs the repair target with these facts as feedback.
    """

    def __init__(self, failed: list[str]):
        super().__init__("; ".join(failed))
        self.failed = list(failed)


@dataclass
class Reply:
    """What a model node answered: decoded JSON in `data`, or raw bytes (audio) in `content`."""

    data: Any = None
    content: bytes = b""
    content_type: str = "application/json"
    body: Optional[dict] = None  # the request body that produced it


@dataclass
class StepInput:
    """What a node's request/run/when functions see."""

    input: BaseModel  # the validated chain input
    steps: dict[str, Optional[dict]]  # outputs of finished upstream steps (None = skipped)
    feedback: list[str] = field(default_factory=list)  # failed facts from a repair round
    round: int = 1
    item: Any = None  # map nodes: the element this call handles
    index: int = 0  # map nodes: its position
    stream: bool = False  # True when the executor streams this (tail) node

    def __getitem__(self, step: str) -> Optional[dict]:
        return self.steps[step]


@dataclass
class Repair:
    """A check step's feedback loop: on CheckFailed re-run `target` (then the check) with the
    failed facts, up to `max_rounds` attempts of the target in total."""

    target: str
    max_rounds: Union[int, Callable[[BaseModel], int]] = 3

    def rounds(self, chain_input: BaseModel) -> int:
        return self.max_rounds(chain_input) if callable(self.max_rounds) else self.max_rounds


RequestFn = Callable[[StepInput], dict]
ParseFn = Callable[[Reply, StepInput], dict]
RunFn = Callable[[StepInput], Union[dict, Awaitable[dict]]]


@dataclass(eq=False)
class Node:
    name: str
    kind: NodeKind = "code"
    depends_on: list[str] = field(default_factory=list)
    endpoint: Optional[str] = None  # truss nodes: which model (llm, whisper, json, tts)
    request: Optional[RequestFn] = None  # truss nodes: predict body from upstream outputs
    parse: Optional[ParseFn] = None  # truss nodes: reply -> output dict (raise NodeError("schema"))
    run: Optional[RunFn] = None  # code nodes
    input_model: Optional[type[BaseModel]] = None  # validates the request body (truss) / nothing
    output_model: Optional[type[BaseModel]] = None  # validates the output; failure = "schema"
    timeout_s: float = 60.0  # per attempt (async: submit + queue + compute)
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    mode: CallMode = "sync"
    when: Optional[Callable[[StepInput], bool]] = None  # False -> step "skipped", output None
    repair: Optional[Repair] = None
    map_over: Optional[Callable[[StepInput], list]] = None  # truss fan-out: a call per item
    concurrency: int = 4  # map nodes: parallel calls
    stream: bool = False  # may be streamed as the chain's tail
    description: str = ""

    @classmethod
    def truss(cls, name: str, endpoint: str, request: RequestFn, parse: Optional[ParseFn] = None,
              **kw) -> "Node":
        return cls(name=name, kind="truss", endpoint=endpoint, request=request, parse=parse, **kw)

    @classmethod
    def code(cls, name: str, run: RunFn, **kw) -> "Node":
        kw.setdefault("retry", NO_RETRY)  # code is deterministic; retrying rarely helps
        return cls(name=name, kind="code", run=run, **kw)

    @classmethod
    def human(cls, name: str, **kw) -> "Node":
        kw.setdefault("retry", NO_RETRY)
        kw.setdefault("timeout_s", 24 * 3600.0)
        return cls(name=name, kind="human", **kw)

    def describe(self) -> dict:
        return {
            "name": self.name,
            "kind": self.kind,
            "endpoint": self.endpoint,
            "depends_on": list(self.depends_on),
            "mode": self.mode if self.kind == "truss" else None,
            "timeout_s": self.timeout_s,
            "retry": self.retry.model_dump(mode="json"),
            "repair": {"target": self.repair.target} if self.repair else None,
            "map": self.map_over is not None,
            "stream": self.stream,
            "description": self.description,
        }


class ChainDefinitionError(ValueError):
    pass


@dataclass(eq=False)
class Chain:
    name: str
    input_model: type[BaseModel]
    nodes: list[Node]
    output: Callable[[dict[str, Optional[dict]], BaseModel], dict]
    description: str = ""
    stream_node: Optional[str] = None  # the node stream_chain streams (voice: tts)

    def __post_init__(self) -> None:
        names = [n.name for n in self.nodes]
        dupes = {n for n in names if names.count(n) > 1}
        if dupes:
            raise ChainDefinitionError(f"chain {self.name!r}: duplicate node names {sorted(dupes)}")
        self._by_name = {n.name: n for n in self.nodes}
        for node in self.nodes:
            self._check_node(node)
        self.order()  # raises on cycles
        if self.stream_node is not None:
            tail = self._by_name.get(self.stream_node)
            if tail is None or tail.kind != "truss" or not tail.stream:
                raise ChainDefinitionError(f"stream_node {self.stream_node!r} must be a truss node with stream=True")
            if any(tail.name in n.depends_on for n in self.nodes):
                raise ChainDefinitionError(f"stream_node {self.stream_node!r} must have no dependents")

    def _check_node(self, node: Node) -> None:
        where = f"chain {self.name!r} node {node.name!r}"
        missing = [d for d in node.depends_on if d not in self._by_name]
        if missing:
            raise ChainDefinitionError(f"{where}: unknown dependencies {missing}")
        if node.kind == "truss" and (node.endpoint is None or node.request is None):
            raise ChainDefinitionError(f"{where}: truss nodes need endpoint and request")
        if node.kind == "code" and node.run is None:
            raise ChainDefinitionError(f"{where}: code nodes need run")
        if node.repair is not None:
            target = node.repair.target
            if target not in node.depends_on:
                raise ChainDefinitionError(f"{where}: repair target {target!r} must be a dependency")
            # Re-running the target must not invalidate work that already consumed its output.
            for other in self.nodes:
                if other is not node and target in other.depends_on and node.name not in self._ancestors_incl(other):
                    raise ChainDefinitionError(
                        f"{where}: {other.name!r} uses {target!r} without waiting for the check")

    def _ancestors_incl(self, node: Node) -> set[str]:
        seen: set[str] = set()
        stack = list(node.depends_on)
        while stack:
            name = stack.pop()
            if name not in seen:
                seen.add(name)
                stack.extend(self._by_name[name].depends_on)
        return seen

    def node(self, name: str) -> Node:
        return self._by_name[name]

    def order(self) -> list[Node]:
        """Nodes in a dependency-respecting order (Kahn); raises on cycles."""
        indegree = {n.name: len(n.depends_on) for n in self.nodes}
        ready = [n.name for n in self.nodes if indegree[n.name] == 0]
        out: list[Node] = []
        while ready:
            name = ready.pop(0)
            out.append(self._by_name[name])
            for other in self.nodes:
                if name in other.depends_on:
                    indegree[other.name] -= 1
                    if indegree[other.name] == 0:
                        ready.append(other.name)
        if len(out) != len(self.nodes):
            stuck = sorted(set(self._by_name) - {n.name for n in out})
            raise ChainDefinitionError(f"chain {self.name!r}: dependency cycle among {stuck}")
        return out

    def parse_input(self, data: Any) -> BaseModel:
        """Validated chain input; raises pydantic.ValidationError (the API answers 422)."""
        return self.input_model.model_validate(data)

    def describe(self) -> dict:
        return {
            "name": self.name,
            "description": self.description,
            "stream_node": self.stream_node,
            "nodes": [n.describe() for n in self.order()],
            "input_schema": self.input_model.model_json_schema(),
        }

    def with_nodes(self, **changes: dict) -> "Chain":
        """A copy with per-node field overrides, e.g. chain.with_nodes(transcribe={"mode": "async"})."""
        nodes = [replace(n, **changes.get(n.name, {})) for n in self.nodes]
        unknown = set(changes) - set(self._by_name)
        if unknown:
            raise ChainDefinitionError(f"chain {self.name!r}: no nodes {sorted(unknown)}")
        return Chain(self.name, self.input_model, nodes, self.output, self.description, self.stream_node)


def validation_message(error: ValidationError) -> str:
    """One line per problem: 'field.path: message'."""
    parts = []
    for item in error.errors():
        loc = ".".join(str(p) for p in item.get("loc", ())) or "(root)"
        parts.append(f"{loc}: {item.get('msg')}")
    return "; ".join(parts)
