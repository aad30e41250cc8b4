"""Compact JSON out, exact JSON in at msgspec's speed.

`dumps` writes JSON as JavaScript's JSON.stringify does (no spaces, UTF-8 kept,
no NaN); it is the one encoder of stored values, metadata and idempotency
records, and anything JSON cannot hold is a `TypeError` naming what it was.

msgspec's decoder reads the compact JSON that kvcache writes in about half the
time of the standard library's C scanner, and keeps big integers exact. Anything
it refuses (NaN, Infinity, a lone surrogate) goes to the standard library, so
what parses and how is exactly `json.loads`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import msgspec

__all__ = ["dumps", "loads"]

_decode = msgspec.json.Decoder().decode
_COMPACT = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def encoder(default: Callable[[Any], Any] | None = None) -> json.JSONEncoder:
    """A compact encoder; `default` converts objects json cannot."""
    if default is None:
        return _COMPACT
    return json.JSONEncoder(
        separators=(",", ":"), ensure_ascii=False, allow_nan=False, default=default
    )


def dumps(value: Any, what: str = "value", coder: json.JSONEncoder = _COMPACT) -> str:
    """Compact JSON; TypeError "<what> is not JSON-serialisable: ..." otherwise."""
    try:
        text: str = coder.encode(value)
    except (TypeError, ValueError, RecursionError) as exc:  # ValueError: NaN, a cycle
        raise TypeError(f"{what} is not JSON-serialisable: {exc}") from None
    return text


def loads(data: str | bytes) -> Any:
    """`json.loads(data)`, faster on valid input."""
    try:
        return _decode(data)
    except (msgspec.DecodeError, UnicodeEncodeError):
        return json.loads(data)
