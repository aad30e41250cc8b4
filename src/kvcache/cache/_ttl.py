"""TTL policy: defaults, the store's minimum, jitter, and the warning when a TTL is raised.

Workers KV refuses expirations under 60 s. A cache entry asked to live 30 s is
raised to the minimum instead of failing, with one `CacheTTLWarning` per call
site (the first line outside kvcache that asked), so code written for a
shorter TTL runs on Workers KV and its author hears about it once.
"""

from __future__ import annotations

import math
import os
import random
import sys
import warnings
from typing import Any, Final

from ..kv.errors import KVValidationError
from ..kv.limits import Limits

__all__ = ["DEFAULT", "CacheTTLWarning", "TTLPolicy", "check_seconds"]

#: "Argument not given": use the cache's default. Distinct from None (no expiry).
DEFAULT: Final[Any] = type("_Default", (), {"__repr__": lambda self: "DEFAULT"})()

_PACKAGE_DIR: Final = os.path.dirname(os.path.abspath(__file__)) + os.sep


class CacheTTLWarning(UserWarning):
    """A TTL below the store's minimum was raised to the minimum."""


def check_seconds(name: str, value: object, *, zero_ok: bool = False) -> float:
    """A finite, positive (or, with `zero_ok`, non-negative) number of seconds."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} must be a number of seconds, not {type(value).__name__}")
    if not math.isfinite(value) or value < 0 or (value == 0 and not zero_ok):
        raise KVValidationError(f"Invalid {name} of {value}. It must be a positive number.")
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

    def jittered(self, ttl: int) -> int:
        """`ttl` shortened by a random fraction up to `jitter`, never below the minimum."""
        if not self.jitter:
            return ttl
        shortened = math.ceil(ttl * (1.0 - self.jitter * self._random.random()))
        return max(shortened, self.limits.min_expiration_ttl)

    def _warn_once(self, message: str) -> None:
        """Warn at the first frame outside kvcache, once per such frame's file and line."""
        frame = sys._getframe(1)
        level = 2  # warnings.warn's level of `frame`
        while frame.f_back is not None and frame.f_code.co_filename.startswith(_PACKAGE_DIR):
            frame = frame.f_back
            level += 1
        site = (frame.f_code.co_filename, frame.f_lineno)
        if site in self._warned:
            return
        self._warned.add(site)
        warnings.warn(message, CacheTTLWarning, stacklevel=level)
