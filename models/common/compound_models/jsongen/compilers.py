"""Compile a JSON Schema into a reusable guide, per Outlines backend.

What is cached (Outlines 1.3): the backends build an `OutlinesLogitsProcessor` per output type,
and the processor carries per-generation state (matchers/guides created on the first token,
`reset()` between generations). Sharing one processor across concurrent requests would mix
their states, so the cache holds the immutable compiled part and every request gets a fresh
processor around it:
- llguidance: a prototype `LLMatcher` (grammar built + first mask computed, so the lexer's
  initial states exist); each request gets `deep_copy()` of it.
- outlines_core: the `outlines_core.Index` (the regex→token automaton, the expensive part);
  each request gets a new Outlines `OutlinesCoreLogitsProcessor(index)` (fresh `Guide`s).

JSON whitespace is forced compact (no free whitespace): llguidance `whitespace_flexible=false`
(applied as an override so a schema's own "x-guidance" cannot re-enable it), outlines_core
`whitespace_pattern=""`. Free whitespace is how small models run away until the token budget.

Semantic rejection (unsatisfiable schema, unsupported keyword, dangling $ref) is decided by
llguidance's JSON compiler for every backend — it is exact about these and costs < 1 ms —
so the 400s do not depend on the configured backend.
"""
from __future__ import annotations

import json
from typing import Any, Protocol

import llguidance
from outlines.backends.llguidance import LLGuidanceBackend, LLGuidanceLogitsProcessor
from outlines.processors.base_logits_processor import OutlinesLogitsProcessor

from .schemas import generation_schema

_COMPACT = {"whitespace_flexible": False, "item_separator": ",", "key_separator": ":"}


class SchemaRejected(ValueError):
    """The compiler cannot produce a grammar for this schema (client error)."""


def _grammar(schema: dict) -> str:
    try:
        return llguidance.LLMatcher.grammar_from_json_schema(schema, overrides=_COMPACT)
    except (ValueError, TypeError) as exc:
        raise SchemaRejected(f"schema rejected by the JSON compiler: {exc}") from exc


def _for_generation(schema: dict) -> tuple[dict, str]:
    """(schema, grammar) to generate with: `generation_schema(schema)` (open objects closed)
    and its grammar, or the schema as given and its grammar when closing would make it
    unsatisfiable for the compiler (a case generation_schema's rules missed). Each grammar is
    built once."""
    closed = generation_schema(schema)
    if closed != schema:
        try:
            grammar = _grammar(closed)
            if not llguidance.LLMatcher.validate_grammar_with_warnings(grammar)[0]:
                return closed, grammar
        except SchemaRejected:
            pass
    return schema, _grammar(schema)


def schema_for_generation(schema: dict) -> dict:
    return _for_generation(schema)[0]


def llguidance_grammar(schema: dict) -> str:
    return _for_generation(schema)[1]


def semantic_check(schema: dict) -> None:
    """Raise SchemaRejected naming the problem llguidance finds (no tokenizer needed)."""
    is_error, messages = llguidance.LLMatcher.validate_grammar_with_warnings(llguidance_grammar(schema))
    if is_error:
        raise SchemaRejected(f"schema rejected by the JSON compiler: {messages[0]}")


class CompiledGuide(Protocol):
    backend: str

    def new_processor(self) -> OutlinesLogitsProcessor: ...


class _LLGuidanceRequestProcessor(LLGuidanceLogitsProcessor):
    """Outlines' llguidance processor, but its matchers are copies of a compiled prototype."""

    def __init__(self, prototype: "llguidance.LLMatcher", llg_tokenizer, tensor_library_name: str):
        super().__init__("", llg_tokenizer, tensor_library_name)
        self._prototype = prototype

    def _setup(self, batch_size: int) -> None:
        if self.tensor_library_name == "torch":
            import llguidance.torch as kernels

            self._bias_logits = self._bias_logits_torch
        else:
            import llguidance.numpy as kernels

            self._bias_logits = self._bias_logits_numpy
        self.ll_matchers = [self._prototype.deep_copy() for _ in range(batch_size)]
        self.bitmask = kernels.allocate_token_bitmask(batch_size, self.llg_tokenizer.vocab_size)

    def _bias_logits_numpy(self, input_ids, logits):
        """Same result as llguidance.numpy.apply_token_bitmask_inplace, ~9x faster per token.

        Its kernel expands the bitmask with repeat/tile/shift (~480 µs on a 49k vocab, 2 cores);
        unpackbits + putmask takes ~55 µs — the difference is most of the constrained-decode gap.
        """
        import numpy as np
        import llguidance.numpy

        vocab = logits.shape[-1]
        for i in range(self.tensor_adapter.shape(input_ids)[0]):
            llguidance.numpy.fill_next_token_bitmask(self.ll_matchers[i], self.bitmask, i)
            allowed = np.unpackbits(self.bitmask[i].view(np.uint8), bitorder="little")
            if allowed.shape[0] < vocab:  # logits beyond the tokenizer's vocab are never allowed
                allowed = np.concatenate([allowed, np.zeros(vocab - allowed.shape[0], np.uint8)])
            np.putmask(logits[i], allowed[:vocab] == 0, -np.inf)
        return logits


class LLGuidanceGuide:
    backend = "llguidance"

    def __init__(self, prototype, llg_tokenizer, tensor_library_name: str):
        self.prototype = prototype
        self._tokenizer = llg_tokenizer
        self._lib = tensor_library_name

    @property
    def vocab_size(self) -> int:
        return self._tokenizer.vocab_size

    def new_matcher(self) -> "llguidance.LLMatcher":
        """A fresh matcher for one request (the fast-forward decoder drives it directly)."""
        return self.prototype.deep_copy()

    def new_processor(self) -> OutlinesLogitsProcessor:
        """The same guide as an Outlines logits processor, for llama.cpp's own loop."""
        return _LLGuidanceRequestProcessor(self.prototype, self._tokenizer, self._lib)


class LLGuidanceCompiler:
    name = "llguidance"

    def __init__(self, outlines_model):
        # Outlines' backend knows how to build the llguidance tokenizer for each model type.
        self._tokenizer = LLGuidanceBackend(outlines_model).llg_tokenizer
        self._lib = outlines_model.tensor_library_name

    def compile(self, schema: dict) -> LLGuidanceGuide:
        import llguidance.numpy

        matcher = llguidance.LLMatcher(self._tokenizer, llguidance_grammar(schema), log_level=0)
        if matcher.is_error():
            raise SchemaRejected(f"schema rejected by the JSON compiler: {matcher.get_error()}")
        # Computing the first mask builds the lexer's initial states; do it at compile time
        # (the cached prototype keeps them) instead of in every request's first token.
        mask = llguidance.numpy.allocate_token_bitmask(1, self._tokenizer.vocab_size)
        llguidance.numpy.fill_next_token_bitmask(matcher, mask, 0)
        if matcher.is_error():
            raise SchemaRejected(f"schema rejected by the JSON compiler: {matcher.get_error()}")
        return LLGuidanceGuide(matcher, self._tokenizer, self._lib)


class OutlinesCoreGuide:
    backend = "outlines_core"

    def __init__(self, index, tensor_library_name: str):
        self.index = index
        self._lib = tensor_library_name

    def new_processor(self) -> OutlinesLogitsProcessor:
        from outlines.backends.outlines_core import OutlinesCoreLogitsProcessor

        return OutlinesCoreLogitsProcessor(self.index, self._lib)


class OutlinesCoreCompiler:
    name = "outlines_core"

    def __init__(self, outlines_model):
        from outlines.backends.outlines_core import OutlinesCoreBackend

        self._vocabulary = OutlinesCoreBackend(outlines_model).vocabulary
        self._lib = outlines_model.tensor_library_name

    def compile(self, schema: dict) -> OutlinesCoreGuide:
        from outlines_core import Index
        from outlines_core.json_schema import build_regex_from_schema

        semantic_check(schema)
        try:
            regex = build_regex_from_schema(json.dumps(schema_for_generation(schema)), "")
            index = Index(regex, self._vocabulary)
        except (ValueError, TypeError, RuntimeError) as exc:
            raise SchemaRejected(f"schema rejected by outlines_core: {exc}") from exc
        return OutlinesCoreGuide(index, self._lib)


COMPILERS = {"llguidance": LLGuidanceCompiler, "outlines_core": OutlinesCoreCompiler}


def make_compiler(backend: str, outlines_model) -> Any:
    try:
        return COMPILERS[backend](outlines_model)
    except KeyError:
        raise ValueError(f"unknown backend {backend!r}; known: {sorted(COMPILERS)}") from None
