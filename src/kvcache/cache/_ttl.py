"""TTL policy: defaults, the store's minimum, jitter, and the warning when a TTL is raised.

Workers KV refuses expirations under 60 s. A cache entry asked to live 30 s is
raised to the minimum instead of failing, with one `CacheTTLWarning` per call
site (the first line outside kvcache that asked), so code written for a
shorter TTL runs on Workers KV and its author hears about it once.

`kvcache.sync` runs the cache on a private event-loop thread, whose stack holds
no user code; it puts the caller's site in `CALLER_SITE` for the call, and the
warning goes there instead.
"""

from __future__ import annotations

import math
import os
import random
import sys
import warnings
from contextvars import ContextVar
from types import FrameType
from typing import Any, Final

from ..kv.errors import KVValidationError
from ..kv.limits import Limits
from ..kv.validation import INT32_MAX

__all__ = [
    "CALLER_SITE",
    "DEFAULT",
    "CacheTTLWarning",
    "TTLPolicy",
    "caller_site",
    "check_seconds",
]

#: "Argument not given": use the cache's default. Distinct from None (no expiry).
DEFAULT: Final[Any] = type("_Default", (), {"__repr__": lambda self: "DEFAULT"})()

#: The kvcache package (not only cache/): frames in here are never a warning's site.
_PACKAGE_DIR: Final = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep

#: (file, line) of the user code a call runs for, when that code is on another thread.
#: Context-local: set inside the task that serves one call, so it never leaks to others.
CALLER_SITE: ContextVar[tuple[str, int] | None] = ContextVar("kvcache_caller_site", default=None)


class CacheTTLWarning(UserWarning):
    """A TTL below the store's minimum was raised to the minimum."""


def _outside(frame: FrameType) -> tuple[FrameType, int]:
    """The first frame at or above `frame` outside kvcache, and how many frames up it is."""
    hops = 0
    while frame.f_back is not None and frame.f_code.co_filename.startswith(_PACKAGE_DIR):
        frame = frame.f_back
        hops += 1
    return frame, hops


def caller_site() -> tuple[str, int]:
    """(file, line) of the first frame outside kvcache that led to this call."""
    frame, _ = _outside(sys._getframe(1))
    return frame.f_code.co_filename, frame.f_lineno


def check_seconds(name: str, value: object, *, zero_ok: bool = False) -> float:
    """A positive (or, with `zero_ok`, non-negative) number of seconds, at most 2**31 - 1.

    That is a store's longest expiration TTL (an int32). Ints are compared exactly,
    so one too large for a float is refused, never an OverflowError.
    """
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} must be a number of seconds, not {type(value).__name__}")
    if not value >= 0 or (value == 0 and not zero_ok):  # NaN fails `>=`
        shown = "a huge negative number" if value < -INT32_MAX else value
        raise KVValidationError(f"Invalid {name} of {shown}. It must be a positive number.")
    if value > INT32_MAX:
        raise KVValidationError(
            f"Invalid {name}: it must be at most {INT32_MAX} seconds (68 years)."
        )
    return float(value)


class TTLPolicy:
    """Turns the TTL a caller gave into the whole seconds a store accepts."""

    def __init__(self, limits: Limits, *, jitter: float = 0.0) -> None:
        jitter = check_seconds("jitter", jitter, zero_ok=True)
        if jitter >= 1:
            raise KVValidationError(f"Invalid jitter of {jitter}. It must be below 1.")
        self.limits = limits
        self.jitter = jitter
        self.default: int | None = None
        self._random = random.Random()
        self._warned: set[tuple[str, int]] = set()

    def base(self, ttl: float | None, name: str = "ttl") -> int | None:
        """Whole seconds (DEFAULT: the default; None: no expiry), at least the minimum."""
        if ttl is DEFAULT:
            return self.default
        if ttl is None:
            return None
        seconds = math.ceil(check_seconds(name, ttl))
        minimum = self.limits.min_expiration_ttl
        if seconds < minimum:
            self._warn_once(
                f"{name}={ttl} is below the store's minimum expiration TTL of {minimum} s; "
                f"using {minimum}"
            )
            seconds = minimum
        return seconds

    def fill_args(
        self,
        ttl: float | None,
        negative_ttl: float | None,
        stale_ttl: float | None,
        lock: bool,
    ) -> tuple[int | None, int | None, float, bool]:
        """get_or_set's options checked, TTLs in whole seconds: (ttl, negative, stale, lock)."""
        base = self.base(ttl, "ttl")
        negative = None
        if negative_ttl is not None:
            negative = self.base(negative_ttl, "negative_ttl")
        stale = 0.0 if stale_ttl is None else check_seconds("stale_ttl", stale_ttl, zero_ok=True)
        if base is not None and base + math.ceil(stale) > INT32_MAX:
            raise KVValidationError(f"Invalid stale_ttl: ttl + stale_ttl exceeds {INT32_MAX}.")
        return base, negative, stale, bool(lock)

    def jittered(self, ttl: int) -> int:
        """`ttl` shortened by a random fraction up to `jitter`, never below the minimum."""
        if not self.jitter:
            return ttl
        shortened = math.ceil(ttl * (1.0 - self.jitter * self._random.random()))
        return max(shortened, self.limits.min_expiration_ttl)

    def _warn_once(self, message: str) -> None:
        """Warn at the first frame outside kvcache (or at `CALLER_SITE`), once per site."""
        site = CALLER_SITE.get()
        level = 0
        if site is None:
            frame, hops = _outside(sys._getframe(1))
            site, level = (frame.f_code.co_filename, frame.f_lineno), 2 + hops
        if site in self._warned:
            return
        self._warned.add(site)
        if level:
            warnings.warn(message, CacheTTLWarning, stacklevel=level)
        else:
            warnings.warn_explicit(message, CacheTTLWarning, site[0], site[1])
