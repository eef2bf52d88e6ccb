"""Constrained decoding on llama.cpp driven by an llguidance matcher, with fast-forward.

Why a loop of our own rather than `create_completion` + a logits processor (which is how the
`outlines_core` backend still runs): a logits processor can only mask one token at a time.
Driving llama.cpp directly lets the grammar do two things a processor cannot:

- **Fast-forward.** After every sampled token llguidance says which tokens the grammar now
  forces (`","qty":` between two fields, `"}]}` at the end). They are consumed without
  sampling and evaluated in the same llama.cpp batch as the sampled token: one forward pass
  for several output tokens. On the bench schemas about a third of the output is forced.
- **No mask when it is not needed.** Greedy decoding checks the model's top token against the
  grammar (~0.4 µs) and builds the 49k-token mask only when that token is not allowed.

What the model sees differs from token-by-token masking in one way: forced text is tokenized
canonically by llguidance, not picked token by token by the model. The text is the same
grammar-valid JSON; every output is still parsed and validated by the engine afterwards.

Sampling (temperature > 0) follows llama-cpp-python's default chain over the allowed tokens:
top-k 40, top-p 0.95, min-p 0.05, then temperature; `seed` makes it reproducible.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

TOP_K, TOP_P, MIN_P = 40, 0.95, 0.05


class GrammarError(RuntimeError):
    """The matcher rejected a token it had allowed (an llguidance bug, never the client's)."""


@dataclass
class Decoded:
    tokens: list[int]
    text: str
    finish_reason: str  # "stop": the value is complete; "length": the token budget ran out
    prompt_tokens: int
    forced_tokens: int  # of `tokens`, how many the grammar forced (fast-forwarded)


class FastForwardDecoder:
    """One llama.cpp context; the caller serializes calls (contexts are not thread-safe)."""

    def __init__(self, llama, grammar_vocab_size: int):
        import llama_cpp

        self.llama = llama
        self.n_vocab = llama.n_vocab()
        self.grammar_vocab_size = grammar_vocab_size  # llguidance tokenizer's, sizes the bitmask
        self._logits_ptr = lambda: llama_cpp.llama_get_logits_ith(llama.ctx, -1)
        self._is_eog = lambda token: bool(llama_cpp.llama_vocab_is_eog(llama._model.vocab, token))

    # -- llama.cpp state ------------------------------------------------------------------
    def _prefill(self, prompt: Sequence[int], reuse_prefix: bool) -> None:
        """Evaluate the prompt, reusing the KV cache of a prefix shared with the last request
        (what `Llama.generate` does); at least one token is evaluated so the logits are fresh."""
        llama = self.llama
        common = 0
        if reuse_prefix:
            cached = llama.input_ids[:llama.n_tokens]
            limit = min(len(cached), len(prompt) - 1)
            while common < limit and cached[common] == prompt[common]:
                common += 1
        llama.n_tokens = common  # eval() drops the KV cache beyond this point
        llama.eval(list(prompt[common:]))

    def _logits(self) -> np.ndarray:
        return np.ctypeslib.as_array(self._logits_ptr(), shape=(self.n_vocab,))

    # -- token choice ---------------------------------------------------------------------
    def _allowed(self, matcher, bitmask) -> np.ndarray:
        import llguidance.numpy

        llguidance.numpy.fill_next_token_bitmask(matcher, bitmask, 0)
        bits = np.unpackbits(bitmask[0].view(np.uint8), bitorder="little").astype(bool)
        if bits.shape[0] < self.n_vocab:  # logits beyond the tokenizer's vocab: never allowed
            bits = np.concatenate([bits, np.zeros(self.n_vocab - bits.shape[0], bool)])
        return bits[:self.n_vocab]

    def _choose(self, matcher, bitmask, temperature: float, rng: np.random.Generator) -> int:
        logits = self._logits()
        if temperature <= 0:
            top = int(np.argmax(logits))
            if matcher.validate_tokens([top]) == 1:
                return top  # what masked greedy decoding would pick, without the mask
        allowed = self._allowed(matcher, bitmask)
        if not allowed.any():  # the grammar allows nothing, not even EOS: a matcher error
            raise GrammarError(f"grammar allows no next token: {matcher.get_error() or 'no error given'}")
        masked = np.where(allowed, logits, -np.inf)
        return int(masked.argmax()) if temperature <= 0 else _sample(masked, temperature, rng)

    # -- the loop -------------------------------------------------------------------------
    def decode(self, prompt: Sequence[int], matcher, max_tokens: int, temperature: float = 0.0,
               seed: Optional[int] = None) -> Decoded:
        """Generate until the grammar is complete or `max_tokens` output tokens exist.

        `matcher` is a fresh llguidance LLMatcher for this request (it is consumed)."""
        import llguidance.numpy

        room = self.llama.n_ctx() - len(prompt)
        max_tokens = min(max_tokens, room)
        # A seed asks for reproducibility: a reused prefix changes the logits in the last
        # bits (other batch shapes), so a seeded request evaluates its prompt afresh.
        self._prefill(prompt, reuse_prefix=seed is None)
        rng = np.random.default_rng(seed)
        bitmask = llguidance.numpy.allocate_token_bitmask(1, self.grammar_vocab_size)
        out: list[int] = []
        forced = 0
        finish = "length"
        while len(out) < max_tokens:
            if matcher.is_stopped():
                finish = "stop"
                break
            token = self._choose(matcher, bitmask, temperature, rng)
            if self._is_eog(token):  # allowed only once the value is complete
                finish = "stop"
                break
            if not matcher.consume_token(token):
                raise GrammarError(f"grammar rejected token {token}: {matcher.get_error()}")
            step = [token]
            ff = matcher.compute_ff_tokens()[:max_tokens - len(out) - 1]
            if ff:
                if not matcher.consume_tokens(ff):
                    raise GrammarError(f"grammar rejected its own forced tokens: {matcher.get_error()}")
                step += ff
                forced += len(ff)
            out += step
            if matcher.is_stopped():
                finish = "stop"
                break
            if len(out) < max_tokens:
                self.llama.eval(step)
        text = self.llama.detokenize(out).decode("utf-8", errors="replace")
        return Decoded(tokens=out, text=text, finish_reason=finish, prompt_tokens=len(prompt),
                       forced_tokens=forced)


def _sample(logits: np.ndarray, temperature: float, rng: np.random.Generator) -> int:
    """llama.cpp's default chain (top-k, top-p, min-p, temperature, draw) over finite logits."""
    candidates = np.flatnonzero(np.isfinite(logits))
    if candidates.size > TOP_K:
        candidates = candidates[np.argpartition(logits[candidates], -TOP_K)[-TOP_K:]]
    candidates = candidates[np.argsort(logits[candidates])[::-1]]
    scores = logits[candidates].astype(np.float64)
    probs = np.exp(scores - scores[0])
    probs /= probs.sum()
    keep = int(np.searchsorted(np.cumsum(probs), TOP_P) + 1)  # smallest set reaching top-p
    keep = max(1, min(keep, int((probs >= MIN_P * probs[0]).sum())))
    candidates, scores = candidates[:keep], scores[:keep]
    weights = np.exp((scores - scores[0]) / temperature)
    return int(rng.choice(candidates, p=weights / weights.sum()))
