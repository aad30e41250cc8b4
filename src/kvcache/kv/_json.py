"""Compact JSON out, exact JSON in at msgspec's speed.

`dumps` writes JSON as JavaScript's JSON.stringify does (no spaces, UTF-8 kept,
no NaN); it is the one encoder of stored values, metadata and idempotency
records, and anything JSON cannot hold is a `TypeError` naming what it was.

msgspec's decoder reads the compact JSON that kvcache writes in about half the
time of the standard library's C scanner, and keeps big integers exact. Anything
it refuses (NaN, Infinity, a lone surrogate) goes to the standard library, so
what parses and how is exactly `json.loads`. msgspec is optional: without it
(inside Pyodide, in a Python Worker, where no C extension may be required) the
standard library reads everything, with the same results.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

__all__ = ["dumps", "loads"]

try:
    import msgspec
except ImportError:  # pragma: no cover - exercised inside Pyodide (tests/cloudflare)
    _decode: Callable[[str | bytes], Any] | None = None
    _DECODE_ERRORS: tuple[type[Exception], ...] = ()
else:
    _decode = msgspec.json.Decoder().decode
    _DECODE_ERRORS = (msgspec.DecodeError, UnicodeEncodeError)
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
    if _decode is None:
        return json.loads(data)
    try:
        return _decode(data)
    except _DECODE_ERRORS:
        return json.loads(data)
