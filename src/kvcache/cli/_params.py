"""Reading flag and argument values the way wrangler does, with errors that name the flag.

wrangler declares `--ttl` and `--expiration` as yargs numbers, which JavaScript's
`Number(text)` reads: `60`, `1.5`, `1e3`, `0x3c`, `Infinity`. The binding then
truncates the number to an int32 (non-finite becomes 0). kvcache reads the same
texts the same way; where JavaScript would make NaN of anything else, kvcache
refuses it as a usage error instead.
"""

from __future__ import annotations

import math
import os
import re
from typing import Any

import click

from ..kv.validation import to_int32
from ._common import blame, loads_strict, shorten
from ._errors import fail

__all__ = ["argv_bytes", "int32_option", "js_number", "json_option"]

_DECIMAL = re.compile(r"[+-]?(?:Infinity|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)")
_RADIX = re.compile(r"0[xX][0-9a-fA-F]+|0[oO][0-7]+|0[bB][01]+")


def js_number(text: str, flag: str) -> float:
    """`Number(text)` for texts that are numbers; a usage error naming `flag` otherwise."""
    stripped = text.strip()
    if _DECIMAL.fullmatch(stripped):
        return float(stripped)  # too large for a float: inf, as in JavaScript
    if _RADIX.fullmatch(stripped):
        try:
            return float(int(stripped, 0))
        except OverflowError:
            return math.inf
    raise click.BadParameter(f"{shorten(text)!r} is not a number", param_hint=f"'{flag}'")


def int32_option(text: str | None, flag: str) -> int | None:
    """A numeric flag as the binding receives it: `Number(text)` truncated to an int32."""
    if text is None:
        return None
    number = js_number(text, flag)
    with blame(f"{flag} {shorten(text)}"):
        return to_int32(number, flag)


def json_option(text: str | None, flag: str) -> Any:
    """A flag holding JSON, parsed as JSON.parse would (no NaN or Infinity)."""
    if text is None:
        return None
    try:
        return loads_strict(text)
    except (ValueError, RecursionError) as exc:
        raise fail(f"{flag} is not valid JSON: {exc}") from None


def argv_bytes(text: str, label: str) -> bytes:
    """The bytes the user typed: bytes that are not UTF-8 come back as they were."""
    try:
        return os.fsencode(text)
    except UnicodeEncodeError as exc:  # a lone surrogate that did not come from argv bytes
        raise fail(f"{label} is not valid text: {exc.reason} at position {exc.start}") from None
