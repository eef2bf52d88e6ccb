"""Split text into the units that are synthesized and streamed one at a time.

Sentence boundaries come from pysbd (rule-based, handles "Dr.", "e.g.", "U.S.",
"3.14", "$4.50", ellipses, quotes). For the time to first audio byte only the first
unit matters: everything after it is synthesized while earlier audio plays (Piper
runs at a real-time factor well below 1). So a long first sentence is additionally
cut at its first clause break (comma, semicolon, colon, dash), where the voice pauses
anyway; later sentences stay whole so their prosody is untouched.
"""
from __future__ import annotations

import functools
import re

import pysbd

# A clause break: punctuation Piper/espeak already renders as a pause, followed by space.
_CLAUSE_BREAK = re.compile(r"(?<=[,;:\u2013\u2014])\s+")


@functools.lru_cache(maxsize=4)
def _segmenter(language: str) -> pysbd.Segmenter:
    # clean=False: keep the text as written (clean=True rewrites whitespace and newlines).
    return pysbd.Segmenter(language=language, clean=False)


def split_sentences(text: str, language: str = "en") -> list[str]:
    """Sentences of `text`, stripped, without empty ones."""
    if not text.strip():
        return []
    try:
        segmenter = _segmenter(language)
    except ValueError:  # pysbd has no rules for this language: English rules are a fair default
        segmenter = _segmenter("en")
    return [s.strip() for s in segmenter.segment(text) if s.strip()]


def split_first_clause(sentence: str, max_words: int, min_words: int = 2) -> list[str]:
    """[sentence] if it has at most `max_words` words, else cut once at the first clause
    break that leaves at least `min_words` words on each side. `max_words <= 0` disables."""
    if max_words <= 0 or len(sentence.split()) <= max_words:
        return [sentence]
    for match in _CLAUSE_BREAK.finditer(sentence):
        head, tail = sentence[: match.start()], sentence[match.end():]
        if len(head.split()) >= min_words and len(tail.split()) >= min_words:
            return [head, tail]
    return [sentence]


def streaming_units(text: str, first_chunk_max_words: int = 12, language: str = "en") -> list[str]:
    """The units to synthesize in order: sentences, the first one possibly cut in two."""
    sentences = split_sentences(text, language)
    if not sentences:
        return []
    return split_first_clause(sentences[0], first_chunk_max_words) + sentences[1:]
