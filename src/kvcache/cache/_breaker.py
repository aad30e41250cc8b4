"""A circuit breaker for the store, and logging once per burst of failures.

After `threshold` consecutive failures the breaker opens: the cache skips the
store (reads miss, writes drop) for `cooldown` seconds, then lets calls through
again as probes. A success closes it; a failure opens it for another cool-down.
A dead store then costs a few failed calls per cool-down instead of a timeout
on every request.

Logging follows the same state: the first failure of a burst is logged as a
warning, the breaker opening and the recovery (with the burst's count) once
each, so a store outage writes a handful of lines, not one per request.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Final

from ..kv.errors import KVBackendError

__all__ = ["STORE_ERRORS", "CircuitBreaker"]

logger = logging.getLogger("kvcache.cache")

#: What a store failure looks like: the cache fails open on these, never on a bad key.
STORE_ERRORS: Final = (KVBackendError, OSError, TimeoutError)


class CircuitBreaker:
    """Counts consecutive store failures; `allow()` says whether to call the store."""

    def __init__(
        self,
        *,
        threshold: int = 5,
        cooldown: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if threshold < 1:
            raise ValueError(f"threshold must be at least 1, not {threshold}")
        if cooldown < 0:
            raise ValueError(f"cooldown must not be negative, not {cooldown}")
        self.threshold = threshold
        self.cooldown = cooldown
        self.clock = clock
        #: Consecutive failures (the current burst); 0 while the store is healthy.
        self.failures = 0
        #: While positive, the clock time until which the store is skipped.
        self.open_until = 0.0

    @property
    def is_open(self) -> bool:
        return not self.allow()

    def allow(self) -> bool:
        """False while open; after the cool-down, True again (the next call probes)."""
        if self.open_until == 0.0:
            return True
        return self.clock() >= self.open_until

    def success(self) -> None:
        """A store call worked: close the breaker and end any burst."""
        if self.failures:
            logger.warning("store recovered after %d failed calls", self.failures)
            self.failures = 0
            self.open_until = 0.0

    def failure(self, op: str, exc: BaseException) -> None:
        """A store call failed: log the first of a burst; open from `threshold` in a row on.

        A failed probe after the cool-down opens the breaker again at once.
        """
        self.failures += 1
        if self.failures == 1:
            logger.warning("store %s failed, failing open: %s", op, exc)
        if self.failures >= self.threshold:
            self.open_until = self.clock() + self.cooldown
            if self.failures == self.threshold:
                logger.warning(
                    "store failed %d times in a row; skipping it for %.1f s at a time",
                    self.threshold,
                    self.cooldown,
                )

    def __repr__(self) -> str:
        state = "open" if self.is_open else "closed"
        return f"<CircuitBreaker {state} failures={self.failures}>"
