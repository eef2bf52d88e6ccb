"""Make text safe and speakable before it reaches the phonemizer.

`clean_text` removes what must never reach espeak-ng (control and format characters,
emoji and other pictographs, private-use and unassigned code points) and collapses
whitespace. `is_speakable` tells whether anything pronounceable is left (a letter or a
digit), so emoji-only input is rejected up front instead of synthesizing silence.

`expand_numbers` writes numbers, currency, percentages, times and ordinals out in
English words with num2words, so the reading does not depend on espeak's number rules
("$4.50" -> "four dollars and fifty cents", "3:05 pm" -> "three oh five p m").
It runs per sentence, after sentence splitting, so "3.14" never looks like a boundary.
"""
from __future__ import annotations

import re
import unicodedata

from num2words import num2words

# Unicode general categories dropped outright: controls, format characters (ZWJ, BOM,
# bidi marks), surrogates, private use, unassigned, "other symbols" (emoji, pictographs,
# dingbats), modifier symbols (emoji skin tones) and enclosing marks (keycap U+20E3).
_DROP_CATEGORIES = {"Cc", "Cf", "Cs", "Co", "Cn", "So", "Sk", "Me"}
_VARIATION_SELECTORS = {chr(c) for c in range(0xFE00, 0xFE10)}
_WHITESPACE = re.compile(r"\s+")


def clean_text(text: str) -> str:
    """NFC-normalized text without control characters, emoji or other pictographs."""
    text = unicodedata.normalize("NFC", text)
    kept = []
    for ch in text:
        if ch.isspace():
            kept.append(" ")  # newlines/tabs are Cc: keep them as word breaks
        elif unicodedata.category(ch) in _DROP_CATEGORIES or ch in _VARIATION_SELECTORS:
            kept.append(" ")
        else:
            kept.append(ch)
    return _WHITESPACE.sub(" ", "".join(kept)).strip()


def is_speakable(text: str) -> bool:
    """True if the text has at least one letter or digit."""
    return any(unicodedata.category(ch)[0] in "LN" for ch in text)


_CURRENCIES = {
    "$": ("dollar", "dollars", "cent", "cents"),
    "€": ("euro", "euros", "cent", "cents"),
    "£": ("pound", "pounds", "penny", "pence"),
}
_SCALES = ("thousand", "million", "billion", "trillion")

_NUMBER = r"\d{1,3}(?:,\d{3})+|\d+"
_CURRENCY_RE = re.compile(
    r"(?P<sym>[$€£])\s?(?P<int>" + _NUMBER + r")(?:\.(?P<frac>\d{1,2}))?(?!\d)"
    r"(?:\s(?P<scale>" + "|".join(_SCALES) + r")\b)?",
    re.IGNORECASE,
)
_TIME_RE = re.compile(
    r"\b(?P<h>[01]?\d|2[0-3]):(?P<m>[0-5]\d)(?!\d)(?:\s?(?P<ampm>[ap])\.?\s?m\b\.?)?", re.IGNORECASE
)
_PERCENT_RE = re.compile(r"(?P<num>-?(?:" + _NUMBER + r")(?:\.\d+)?)\s?%")
_ORDINAL_RE = re.compile(r"\b(?P<num>\d+)(?:st|nd|rd|th)\b", re.IGNORECASE)
# A sentence-final period after a number is not part of it ("Pi is 3.14."), but a
# version-like "2.0.1" is left alone for espeak.
_DECIMAL_RE = re.compile(
    r"(?<![\w.,])(?P<neg>-)?(?P<int>" + _NUMBER + r")\.(?P<frac>\d+)(?!\d|\.\d)"
)
_INTEGER_RE = re.compile(r"(?<![\w.,])(?P<neg>-)?(?P<int>" + _NUMBER + r")(?!\d|\.\d)")


def _int_words(digits: str) -> str:
    return num2words(int(digits.replace(",", "")))


def _decimal_words(negative: bool, integer: str, fraction: str) -> str:
    # Digits after the point are read one by one: "3.14" -> "three point one four".
    words = f"{_int_words(integer)} point {' '.join(num2words(int(d)) for d in fraction)}"
    return f"minus {words}" if negative else words


def _currency(match: re.Match) -> str:
    one, many, sub_one, sub_many = _CURRENCIES[match["sym"]]
    whole = int(match["int"].replace(",", ""))
    frac = match["frac"]
    scale = match["scale"]
    if scale:  # "$4.5 million" -> "four point five million dollars"
        amount = _decimal_words(False, match["int"], frac) if frac else num2words(whole)
        return f"{amount} {scale.lower()} {many}"
    cents = int(frac.ljust(2, "0")) if frac else 0
    parts = []
    if whole or not cents:
        parts.append(f"{num2words(whole)} {one if whole == 1 else many}")
    if cents:
        parts.append(f"{num2words(cents)} {sub_one if cents == 1 else sub_many}")
    return " and ".join(parts)


def _time(match: re.Match) -> str:
    hour, minute = int(match["h"]), int(match["m"])
    hour_words = num2words(hour)
    if minute == 0:
        spoken = f"{hour_words} o'clock" if not match["ampm"] else hour_words
    elif minute < 10:
        spoken = f"{hour_words} oh {num2words(minute)}"
    else:
        spoken = f"{hour_words} {num2words(minute)}"
    if match["ampm"]:
        spoken += f" {match['ampm'].lower()} m"
        if match.group(0).endswith(".") and match.end() == len(match.string):
            spoken += "."  # "p.m." closing the sentence also closed it
    return spoken


def _percent(match: re.Match) -> str:
    number = match["num"]
    negative = number.startswith("-")
    number = number.lstrip("-")
    if "." in number:
        integer, fraction = number.split(".", 1)
        words = _decimal_words(negative, integer, fraction)
    else:
        words = ("minus " if negative else "") + _int_words(number)
    return f"{words} percent"


def _integer(match: re.Match) -> str:
    digits = match["int"]
    value = int(digits.replace(",", ""))
    # A bare four-digit number in this range is most often a year: "1999" reads
    # "nineteen ninety-nine" (and "1500 people" "fifteen hundred people", still right).
    if "," not in digits and len(digits) == 4 and 1100 <= value <= 2099 and not match["neg"]:
        return num2words(value, to="year")
    words = num2words(value)
    return f"minus {words}" if match["neg"] else words


def expand_numbers(text: str) -> str:
    """Numbers, currency, percentages, clock times and ordinals written as English words."""
    text = _CURRENCY_RE.sub(_currency, text)
    text = _TIME_RE.sub(_time, text)
    text = _PERCENT_RE.sub(_percent, text)
    text = _ORDINAL_RE.sub(lambda m: num2words(int(m["num"]), to="ordinal"), text)
    text = _DECIMAL_RE.sub(lambda m: _decimal_words(bool(m["neg"]), m["int"], m["frac"]), text)
    text = _INTEGER_RE.sub(_integer, text)
    return text


def normalize_sentence(sentence: str, language: str = "en") -> str:
    """A cleaned sentence ready for Piper; numbers are expanded for English voices only
    (num2words' English rules would be wrong for other languages, where espeak reads them)."""
    if language == "en":
        sentence = expand_numbers(sentence)
    return _WHITESPACE.sub(" ", sentence).strip()
