"""Compact JSON out, exact JSON in at msgspec's speed, and never a RecursionError.

`dumps` writes JSON as JavaScript's JSON.stringify does (no spaces, UTF-8 kept,
no NaN, a lone surrogate as a `\\uXXXX` escape, so the text is always valid
UTF-8); it is the one encoder of stored values, metadata and idempotency
records, and anything JSON cannot hold is a `TypeError` naming what it was.

msgspec's decoder reads the compact JSON that kvcache writes in about half the
time of the standard library's C scanner, and keeps big integers exact. Anything
it refuses (NaN, Infinity, a lone surrogate) goes to the standard library, so
what parses and how is exactly `json.loads`. msgspec is optional: without it
(inside Pyodide, in a Python Worker, where no C extension may be required) the
standard library reads everything, with the same results.

Both C coders recurse once per nesting level against the thread's recursion
limit, so how deep a document they manage depends on how deep the caller's
stack already is. When one runs out, the work is done again on a new thread,
whose stack is empty. Past that, `dumps` raises TypeError and `loads` ValueError
(as for any malformed JSON), never RecursionError; `dumps_readable` also refuses
a document too deep for `loads` to read back.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["dumps", "dumps_readable", "encoder", "loads"]

T = TypeVar("T")

try:
    import msgspec
except ImportError:  # pragma: no cover - exercised inside Pyodide (tests/cloudflare)
    _decode: Callable[[str | bytes], Any] | None = None
    _DECODE_ERRORS: tuple[type[Exception], ...] = ()
else:
    _decode = msgspec.json.Decoder().decode
    _DECODE_ERRORS = (msgspec.DecodeError, UnicodeEncodeError)
_COMPACT = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)
_SURROGATE = re.compile("[\ud800-\udfff]")
_TOO_DEEP = "it is nested too deeply"
#: A shorter document nests at most half as many levels, which `loads` always reads.
_SURELY_READABLE = 1600


def encoder(default: Callable[[Any], Any] | None = None) -> json.JSONEncoder:
    """A compact encoder; `default` converts objects json cannot."""
    if default is None:
        return _COMPACT
    if not callable(default):
        raise TypeError(f"default must be callable, not {type(default).__name__}")
    return json.JSONEncoder(
        separators=(",", ":"), ensure_ascii=False, allow_nan=False, default=default
    )


def _on_fresh_stack(work: Callable[[], T]) -> T:
    """`work()` on a new thread, whose stack is empty; its exception is re-raised here."""
    outcome: list[Any] = []

    def run() -> None:
        try:
            outcome.append((True, work()))
        except BaseException as exc:  # re-raised in the caller's thread below
            outcome.append((False, exc))

    thread = threading.Thread(target=run, name="kvcache-deep-json")
    thread.start()
    thread.join()
    done, result = outcome[0]
    if not done:
        raise result
    value: T = result
    return value


def _well_formed(text: str) -> str:
    """JSON.stringify's output: lone surrogates as `\\uXXXX`, so the text encodes as UTF-8."""
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return _SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)
    return text


def dumps(value: Any, what: str = "value", coder: json.JSONEncoder = _COMPACT) -> str:
    """Compact JSON; TypeError "<what> is not JSON-serialisable: ..." otherwise."""
    try:
        try:
            text: str = coder.encode(value)
        except RecursionError:
            text = _on_fresh_stack(lambda: coder.encode(value))
    except RecursionError:
        raise TypeError(f"{what} is not JSON-serialisable: {_TOO_DEEP}") from None
    except (TypeError, ValueError) as exc:  # ValueError: NaN, a cycle, a huge int
        raise TypeError(f"{what} is not JSON-serialisable: {exc}") from None
    return _well_formed(text)


def dumps_readable(value: Any, what: str) -> str:
    """`dumps` for what kvcache itself reads back later (metadata, records): never unreadable."""
    text = dumps(value, what)
    if len(text) > _SURELY_READABLE:
        try:
            loads(text)
        except ValueError:
            raise TypeError(f"{what} is not JSON-serialisable: {_TOO_DEEP}") from None
    return text


def _loads_here(data: str | bytes) -> Any:
    if _decode is None:
        return json.loads(data)
    try:
        return _decode(data)
    except _DECODE_ERRORS:
        return json.loads(data)


def loads(data: str | bytes) -> Any:
    """`json.loads(data)`, faster on valid input; ValueError for anything it cannot read."""
    try:
        return _loads_here(data)
    except RecursionError:
        pass
    try:
        return _on_fresh_stack(lambda: _loads_here(data))
    except RecursionError:
        raise ValueError("nested too deeply to decode") from None
