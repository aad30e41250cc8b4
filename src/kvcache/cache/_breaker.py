"""A circuit breaker for the store, and logging once per burst of failures.

    closed --(threshold failures in a row)--> open --(cool-down passes)--> half-open
      ^                                         ^                              |
      '----------- the probe succeeds ----------|------ the probe fails -------'
                                                  (cool-down doubles, up to max_cooldown)

While open the cache skips the store (reads miss, writes drop). Half-open lets
exactly one call through as a probe; every other call keeps skipping until it
reports back. A failed probe reopens the breaker for twice the last cool-down
(capped at `max_cooldown`); a success closes it and resets the cool-down. So a
dead store costs one call per cool-down, and a store that comes back is used
again within `max_cooldown` seconds. A probe that never reports back (its caller
was cancelled, say) frees the half-open slot after one cool-down.

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
    """Counts consecutive store failures; `allow()` says whether to call the store.

    `cooldown` is the first cool-down in seconds; it doubles with each failed
    probe up to `max_cooldown` (default 4 × `cooldown`). The defaults (0.25 s
    up to 1 s) keep a dead store to about one call a second while using it
    again within a second of its return. `probes` and `trips` count the probe
    calls let through and the times the breaker opened.
    """

    def __init__(
        self,
        *,
        threshold: int = 5,
        cooldown: float = 0.25,
        max_cooldown: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if isinstance(threshold, bool) or not isinstance(threshold, int) or threshold < 1:
            raise ValueError(f"threshold must be an int of at least 1, not {threshold!r}")
        if not 0 <= cooldown < float("inf"):
            raise ValueError(f"cooldown must be a finite number >= 0, not {cooldown!r}")
        longest = 4 * cooldown if max_cooldown is None else max_cooldown
        if not cooldown <= longest < float("inf"):
            raise ValueError(f"max_cooldown must be finite and >= cooldown, not {max_cooldown!r}")
        self.threshold = threshold
        self.cooldown = cooldown
        self.max_cooldown = longest
        self.clock = clock
        #: Consecutive failures (the current burst); 0 while the store is healthy.
        self.failures = 0
        #: 0.0 while closed; otherwise the clock time until which calls are skipped
        #: (the end of the cool-down, or of the running probe's grace period).
        self.open_until = 0.0
        #: The cool-down the breaker waits next (or is waiting now).
        self.delay = cooldown
        #: True from the moment a probe is let through until a call reports back.
        self.probing = False
        self.probes = 0
        self.trips = 0

    @property
    def is_open(self) -> bool:
        """True while open or half-open, that is while calls are being skipped."""
        return self.open_until != 0.0

    @property
    def state(self) -> str:
        """One of "closed", "open" and "half-open" (a probe is out)."""
        if not self.open_until:
            return "closed"
        return "half-open" if self.probing else "open"

    def closed(self) -> bool:
        """True while the store is in use; unlike `allow()`, never starts a probe."""
        return self.open_until == 0.0

    def allow(self) -> bool:
        """Whether to make this store call: always while closed, never while open;
        after the cool-down exactly one caller gets True (the probe) and must report
        `success()` or `failure()`."""
        if self.open_until == 0.0:
            return True
        now = self.clock()
        if now < self.open_until:
            return False
        self.probing = True
        self.probes += 1
        self.open_until = now + self.delay  # others skip while the probe is out
        return True

    def success(self) -> None:
        """A store call worked: close the breaker, end any burst, reset the cool-down."""
        if self.failures:
            logger.warning("store recovered after %d failed calls", self.failures)
            self.failures = 0
            self.open_until = 0.0
            self.delay = self.cooldown
            self.probing = False

    def failure(self, op: str, exc: BaseException) -> None:
        """A store call failed: log the first of a burst; open from `threshold` in a row on.

        A failed probe reopens the breaker for a doubled cool-down. A call that was
        already under way when the breaker opened changes nothing but the count (unless
        a probe is out: calls carry no identity, so any failure then counts as its).
        """
        self.failures += 1
        if self.failures == 1:
            logger.warning("store %s failed, failing open: %s", op, exc)
        if self.probing:
            self.probing = False
            self.delay = min(self.delay * 2, self.max_cooldown)
            self.open_until = self.clock() + self.delay
        elif self.open_until == 0.0 and self.failures >= self.threshold:
            self.trips += 1
            self.open_until = self.clock() + self.delay
            logger.warning(
                "store failed %d times in a row; skipping it, one probe after %.2g s "
                "(backing off to %.2g s)",
                self.failures,
                self.delay,
                self.max_cooldown,
            )

    def __repr__(self) -> str:
        return f"<CircuitBreaker {self.state} failures={self.failures} delay={self.delay:g}>"
