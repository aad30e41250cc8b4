"""Exact JSON decoding at msgspec's speed.

msgspec's decoder reads the compact JSON that kvcache writes in about half the
time of the standard library's C scanner, and keeps big integers exact. Anything
it refuses (NaN, Infinity, a lone surrogate) goes to the standard library, so
what parses and how is exactly `json.loads`.
"""

from __future__ import annotations

import json
from typing import Any

import msgspec

__all__ = ["loads"]

_decode = msgspec.json.Decoder().decode


def loads(data: str | bytes) -> Any:
    """`json.loads(data)`, faster on valid input."""
    try:
        return _decode(data)
    except (msgspec.DecodeError, UnicodeEncodeError):
        return json.loads(data)
