"""JSON text from callers, read within bounds: no number or nesting may make Python's reader fail."""

from __future__ import annotations

import json
import re
from itertools import accumulate
from typing import Any

from pganalytics_ml.errors import invalid

# Integers longer than this are read as floats (infinite past 1e308), which every caller's range check
# refuses by name; Python's int() would fail past 4,300 digits. A bigint has at most 20 characters.
MAX_INTEGER_CHARS = 40
# Every document the extension reads is a flat object or an array of them.
MAX_DEPTH = 100

_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"')
_NOT_BRACKET = re.compile(r"[^\[\]{}]")
_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}


def depth_beyond(text: str, limit: int) -> int:
    """How deeply arrays and objects nest in JSON ``text`` when that is more than ``limit``; else 0.

    Found without parsing, so that no nesting can exhaust a stack."""
    if text.count("[") + text.count("{") <= limit:  # it cannot nest deeper than it opens
        return 0
    brackets = _NOT_BRACKET.sub("", _STRING.sub("", text))
    levels = max(accumulate(map(_STEP.__getitem__, brackets)), default=0)
    return levels if levels > limit else 0


def _integer(literal: str) -> int | float:
    return int(literal) if len(literal) <= MAX_INTEGER_CHARS else float(literal)


def loads(text: str, what: str, hint: str) -> Any:
    """``json.loads(text)``, refusing nesting deeper than MAX_DEPTH (22023, with ``hint``; ``what`` names
    the document) and reading integers too long for int() as floats."""
    levels = depth_beyond(text, MAX_DEPTH)
    if levels:
        raise invalid(f"{what} is nested {levels} levels deep; at most {MAX_DEPTH} are read", hint=hint)
    return json.loads(text, parse_int=_integer)
