"""Numeric options (TTLs, expirations, cache TTLs, list limits) as the binding coerces them.

workerd converts each to a C++ int32 the way JavaScript would: NaN and the
infinities become 0, fractions are truncated, numeric strings are read as
JavaScript's Number() reads them, and anything outside the int32 range is
refused. Python ints are compared exactly, so no value, however large, ever
passes through a float (no OverflowError).
"""

from __future__ import annotations

import math
import re

from .errors import KVValidationError
from .limits import Limits

__all__ = [
    "INT32_MAX",
    "INT32_MIN",
    "LIST_LIMIT_MAX",
    "check_cache_ttl",
    "expiry",
    "expiry_and_ttl",
    "list_limit",
    "to_int32",
]

LIST_LIMIT_MAX = 1000
INT32_MIN = -2_147_483_648
INT32_MAX = 2_147_483_647
#: What JavaScript's Number() reads from a string (after trimming white space).
_JS_NUMBER = re.compile(
    r"[+-]?(?:Infinity|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)"
    r"|0[xX][0-9a-fA-F]+|0[oO][0-7]+|0[bB][01]+",
    re.ASCII,
)


def _js_number(text: str) -> float:
    """JavaScript's Number(text): NaN for anything it would not read as a number."""
    text = text.strip()
    if not text:
        return 0.0
    if not _JS_NUMBER.fullmatch(text):
        return math.nan
    if text[:2].lower() in ("0x", "0o", "0b"):
        try:
            return float(int(text, 0))
        except OverflowError:  # past any float: Infinity, as in JavaScript
            return math.inf
    return float(text)


def to_int32(value: object, name: str) -> int:
    """Coerce a numeric option as the binding does: truncate, NaN -> 0, int32 range."""
    if isinstance(value, bool):
        raise TypeError(f"{name} must be an int, not bool")
    if isinstance(value, int):
        result = int(value)  # exact, however large: no float in between
    else:
        if isinstance(value, float):
            number = value
        elif isinstance(value, str):
            number = _js_number(value)
        else:
            raise TypeError(
                f"{name} must be an int, float or numeric str, not {type(value).__name__}"
            )
        if not math.isfinite(number):
            return 0
        result = int(number)
    if not INT32_MIN <= result <= INT32_MAX:
        raise KVValidationError(
            f"Value out of range. Must be between {INT32_MIN} and {INT32_MAX} (inclusive)."
        )
    return result


def check_cache_ttl(cache_ttl: object, op: str, limits: Limits) -> None:
    if cache_ttl is None:
        return
    ttl = to_int32(cache_ttl, "cache_ttl")
    if ttl < limits.min_cache_ttl:
        raise KVValidationError(
            f"Invalid cache_ttl of {ttl}. Cache TTL must be at least {limits.min_cache_ttl}.",
            status=400,
            op=op,
        )


def expiry(
    expiration: object, expiration_ttl: object, now: float, limits: Limits, op: str = "PUT"
) -> int | None:
    """Absolute expiry in epoch seconds, or None; expiration_ttl wins over expiration."""
    return expiry_and_ttl(expiration, expiration_ttl, now, limits, op)[0]


def expiry_and_ttl(
    expiration: object, expiration_ttl: object, now: float, limits: Limits, op: str = "PUT"
) -> tuple[int | None, int | None]:
    """`expiry`, and the TTL in seconds when one was given (it wins over expiration)."""
    whole_now = math.floor(now)
    if expiration_ttl is not None:
        ttl = to_int32(expiration_ttl, "expiration_ttl")
        if ttl <= 0:
            raise KVValidationError(
                f"Invalid expiration_ttl of {ttl}. Please specify integer greater than 0.",
                status=400,
                op=op,
            )
        if ttl < limits.min_expiration_ttl:
            raise KVValidationError(
                f"Invalid expiration_ttl of {ttl}. "
                f"Expiration TTL must be at least {limits.min_expiration_ttl}.",
                status=400,
                op=op,
            )
        return whole_now + ttl, ttl
    if expiration is not None:
        at = to_int32(expiration, "expiration")
        if at <= whole_now:
            raise KVValidationError(
                f"Invalid expiration of {at}. Please specify integer greater than "
                "the current number of seconds since the UNIX epoch.",
                status=400,
                op=op,
            )
        if at < whole_now + limits.min_expiration_ttl:
            raise KVValidationError(
                f"Invalid expiration of {at}. Expiration times must be at least "
                f"{limits.min_expiration_ttl} seconds in the future.",
                status=400,
                op=op,
            )
        return at, None
    return None, None


def list_limit(limit: object) -> int:
    value = 0 if limit is None else to_int32(limit, "limit")
    if value <= 0:
        return LIST_LIMIT_MAX
    if value > LIST_LIMIT_MAX:
        raise KVValidationError(
            f"Invalid key_count_limit of {value}. Please specify an integer less than 1000.",
            status=400,
            op="GET",
        )
    return value
