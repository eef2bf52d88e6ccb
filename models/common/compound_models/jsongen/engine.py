"""The loaded model, the guide cache and one constrained generation per request.

llama.cpp contexts are not thread-safe, so generations are serialized by a lock; compiles are
not (they run on the cache's pool), so a slow compile never blocks other schemas' requests.
The guarantee "never an invalid body" is enforced here, after decoding: the text must parse
and validate against the request's schema, otherwise the request fails with a 422 that says
why (truncated at N tokens when the budget ran out) — the raw text is never returned.

Two decoding paths: the llguidance backend runs decode.py's fast-forward loop over llama.cpp;
outlines_core runs llama.cpp's own loop with Outlines' logits processor.
"""
from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from typing import Any, Optional

from compound_models.errors import InputError

from .cache import CompileTimeout, GuideCache
from compound_models.llm.chat_template import chat_prompt_tokens, gguf_chat_formatter

from .compilers import LLGuidanceGuide, SchemaRejected, make_compiler
from .decode import FastForwardDecoder
from .schemas import check_schema, schema_hash, validation_error
from .settings import Settings


@dataclass
class JsonRequest:
    schema: dict
    prompt: Optional[str] = None
    messages: Optional[list[dict]] = None
    max_tokens: Optional[int] = None
    temperature: float = 0.0
    seed: Optional[int] = None
    schema_name: Optional[str] = None


@dataclass
class JsonResult:
    output: Any
    text: str
    finish_reason: str
    usage: dict
    cache_hit: bool
    compile_ms: float
    generate_ms: float
    schema_hash: str
    backend: str

    def to_predict_response(self) -> dict:
        return {
            "output": self.output,
            "cache_hit": self.cache_hit,
            "compile_ms": round(self.compile_ms, 3),
            "usage": self.usage,
            "finish_reason": self.finish_reason,
            "backend": self.backend,
            "schema_hash": self.schema_hash,
            "generate_ms": round(self.generate_ms, 3),
        }


def load_llama(settings: Settings):
    """The CPU model: the bundled SmolLM2 GGUF through llama.cpp."""
    if settings.engine != "llama_cpp":
        # The GPU deployment (model_metadata.gpu) serves the production LLM with vLLM's own
        # llguidance structured outputs; it is configuration for `truss push`, not run here.
        raise RuntimeError(
            f"engine {settings.engine!r} is the GPU deployment path (see model_metadata.gpu); "
            "this build runs engine 'llama_cpp' only")
    import llama_cpp

    from compound_models.bundled import smollm2_gguf

    return llama_cpp.Llama(model_path=str(smollm2_gguf()), n_ctx=settings.n_ctx,
                           n_threads=settings.n_threads, verbose=False)


class JsonEngine:
    def __init__(self, settings: Settings, llama=None):
        self.settings = settings
        self._llama = llama
        self._lock = threading.Lock()
        self.cache: Optional[GuideCache] = None
        self._formatter = None  # the GGUF's chat template, built on first use
        self._decoder: Optional[FastForwardDecoder] = None

    def load(self) -> None:
        import outlines

        if self._llama is None:
            self._llama = load_llama(self.settings)
        self.model = outlines.from_llamacpp(self._llama)
        self.compiler = make_compiler(self.settings.backend, self.model)
        self.cache = GuideCache(self.compiler.compile, maxsize=self.settings.cache_size,
                                timeout_s=self.settings.compile_timeout_s,
                                workers=self.settings.compile_workers)
        # Preconfigured schemas compile at load: a bad one fails the deploy, not a request.
        for name, schema in self.settings.schemas.items():
            try:
                self.lookup(schema, field=f"model_metadata.schemas.{name}")
            except InputError as exc:
                raise ValueError(f"preconfigured schema {name!r} is unusable: {exc}") from exc

    @property
    def llama(self):
        return self._llama

    def named_schema(self, name: Any) -> dict:
        if not isinstance(name, str) or name not in self.settings.schemas:
            known = ", ".join(sorted(self.settings.schemas)) or "(none)"
            raise InputError(f"unknown schema {name!r}; preconfigured: {known}", "schema_name")
        return self.settings.schemas[name]

    def lookup(self, schema: Any, field: str = "schema"):
        """(compiled guide lookup, key); 400 for a bad schema, 503 for a compile over budget."""
        if not isinstance(schema, dict):
            check_schema(schema, self.settings.limits, field)  # raises the 400
        key = schema_hash(schema)
        if key not in self.cache:
            check_schema(schema, self.settings.limits, field)
        try:
            return self.cache.get(key, schema), key
        except SchemaRejected as exc:
            raise InputError(str(exc), field) from exc
        except CompileTimeout as exc:
            raise InputError(f"{exc}; the compile continues in the background, retry later",
                             field, status_code=503) from exc

    def generate(self, req: JsonRequest) -> JsonResult:
        found, key = self.lookup(req.schema)
        max_tokens = req.max_tokens or self.settings.max_tokens_default
        started = time.perf_counter()
        with self._lock:
            if isinstance(found.value, LLGuidanceGuide):
                text, finish_reason, usage = self._decode_fast_forward(req, found.value, max_tokens)
            else:
                text, finish_reason, usage = self._decode_with_processor(req, found.value, max_tokens)
        generate_ms = (time.perf_counter() - started) * 1e3
        room = self._llama.n_ctx() - usage["prompt_tokens"]
        output = self._checked_output(text, req.schema, finish_reason, usage["completion_tokens"], max_tokens,
                                      context_room=room)
        return JsonResult(output=output, text=text, finish_reason=finish_reason, usage=usage,
                          cache_hit=found.hit, compile_ms=found.compile_ms, generate_ms=generate_ms,
                          schema_hash=key, backend=self.compiler.name)

    def prompt_tokens(self, req: JsonRequest) -> list[int]:
        """The request's prompt as token ids: messages through the model's chat template,
        a plain prompt the way llama.cpp's create_completion tokenizes it."""
        if req.messages is not None:
            if self._formatter is None:
                self._formatter = gguf_chat_formatter(self._llama)
            return chat_prompt_tokens(self._llama, self._formatter, req.messages)
        return self._llama.tokenize(req.prompt.encode("utf-8"), add_bos=True, special=True)

    def _decode_fast_forward(self, req: JsonRequest, guide: LLGuidanceGuide, max_tokens: int):
        """The llguidance path: our own llama.cpp loop with fast-forward (see decode.py)."""
        prompt = self.prompt_tokens(req)
        window = self._llama.n_ctx()
        if len(prompt) >= window:
            raise InputError(f"the prompt is {len(prompt)} tokens; the model's context window "
                             f"is {window}", "messages" if req.messages is not None else "prompt")
        if self._decoder is None:
            self._decoder = FastForwardDecoder(self._llama, guide.vocab_size)
        decoded = self._decoder.decode(prompt, guide.new_matcher(), max_tokens,
                                       temperature=req.temperature, seed=req.seed)
        usage = {"prompt_tokens": decoded.prompt_tokens, "completion_tokens": len(decoded.tokens),
                 "total_tokens": decoded.prompt_tokens + len(decoded.tokens),
                 "forced_tokens": decoded.forced_tokens}
        return decoded.text, decoded.finish_reason, usage

    def _decode_with_processor(self, req: JsonRequest, guide, max_tokens: int):
        """The outlines_core path: llama.cpp's own loop with Outlines' logits processor."""
        import llama_cpp

        kwargs = dict(
            max_tokens=max_tokens,
            temperature=req.temperature,
            logits_processor=llama_cpp.LogitsProcessorList([guide.new_processor()]),
        )
        if req.seed is not None:
            kwargs["seed"] = req.seed
        try:
            if req.messages is not None:
                completion = self._llama.create_chat_completion(req.messages, **kwargs)
                text = completion["choices"][0]["message"]["content"] or ""
            else:
                completion = self._llama.create_completion(req.prompt, **kwargs)
                text = completion["choices"][0]["text"]
        except ValueError as exc:  # llama.cpp: prompt + max_tokens beyond the context window
            raise InputError(str(exc), "max_tokens" if "context" in str(exc) else None) from exc
        return text, completion["choices"][0]["finish_reason"], dict(completion["usage"])

    @staticmethod
    def _checked_output(text: str, schema: dict, finish_reason: str, n_tokens: int, max_tokens: int,
                        context_room: Optional[int] = None) -> Any:
        """The parsed, validated value; a 422 naming why otherwise. `context_room`: the tokens
        the context window left after the prompt, when that (not max_tokens) was the limit."""
        truncated = finish_reason == "length"
        if context_room is not None and context_room < max_tokens:
            limit, advice = f"the {context_room} tokens the context window left after the prompt", \
                "shorten the prompt"
        else:
            limit, advice = f"max_tokens={max_tokens}", "raise max_tokens"
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            if truncated:
                raise InputError(
                    f"truncated at {n_tokens} tokens: the JSON value did not close within "
                    f"{limit}; {advice}", "max_tokens", status_code=422) from exc
            raise InputError(f"model output is not valid JSON ({exc.msg}); no body returned",
                             status_code=422) from exc
        problem = validation_error(value, schema)
        if problem is not None:
            if truncated:
                raise InputError(
                    f"truncated at {n_tokens} tokens ({limit}): the value ended before it satisfied "
                    f"the schema ({problem}); {advice}", "max_tokens", status_code=422)
            raise InputError(f"model output failed schema validation {problem}; no body returned",
                             status_code=422)
        return value
