"""One shop's query-cost budget, as Shopify reports it, so callers wait instead of failing.

Shopify's Admin GraphQL API is a leaky bucket per app and shop: a query runs only
if the bucket holds its requested cost, and the bucket refills at `restoreRate`
points a second up to `maximumAvailable`. Every response says where the bucket
stands (`extensions.cost.throttleStatus`). `CostBudget` keeps that picture between
responses and makes each caller reserve its query's cost first, in arrival order,
sleeping until the bucket has refilled enough; so fifty concurrent callers under a
small bucket are spaced out rather than throttled.

Until the first answer tells the bucket's size only one request is in flight. A
reported level is taken, less what the requests still in flight reserved (Shopify
may not have counted those yet), and only when it is lower than the picture's own
(answers arrive out of order; the level rises with time alone), so the picture
errs on the side of waiting. Other clients of the same app and shop (other
processes) spend the same bucket: their spending shows in the reports.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["CostBudget", "ThrottleStatus"]

Sleep = Callable[[float], Awaitable[None]]
_EPSILON = 1e-6
_MIN_WAIT = 0.001


@dataclass(frozen=True, slots=True)
class ThrottleStatus:
    """`extensions.cost.throttleStatus` of one response."""

    maximum_available: float
    currently_available: float
    restore_rate: float

    @classmethod
    def parse(cls, extensions: Any) -> ThrottleStatus | None:
        """From a response's top-level `extensions`; None when absent or malformed."""
        try:
            status: Mapping[str, Any] = extensions["cost"]["throttleStatus"]
            values = (
                float(status["maximumAvailable"]),
                float(status["currentlyAvailable"]),
                float(status["restoreRate"]),
            )
        except (KeyError, TypeError, ValueError):
            return None
        if values[0] <= 0 or values[2] <= 0:
            return None
        return cls(*values)


def requested_cost(extensions: Any) -> float | None:
    """`extensions.cost.requestedQueryCost`, when the response has one."""
    try:
        value = extensions["cost"]["requestedQueryCost"]
    except (KeyError, TypeError):
        return None
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


class CostBudget:
    """The bucket of one shop: `await reserve(cost)` before a request, `settle` after it."""

    def __init__(
        self, *, clock: Callable[[], float] = time.monotonic, sleep: Sleep = asyncio.sleep
    ) -> None:
        self._clock = clock
        self._sleep = sleep
        self._turn = asyncio.Lock()  # reservations are served in arrival order
        self._known: ThrottleStatus | None = None
        self._level = 0.0  # points available at `_at` (may be negative: owed)
        self._at = 0.0
        self._in_flight = 0.0
        self._probing = False
        self._answered = asyncio.Event()  # set by every settle
        self._paused_until = 0.0

    @property
    def status(self) -> ThrottleStatus | None:
        """The last throttle status Shopify reported, or None before the first answer."""
        return self._known

    def available(self) -> float:
        """Points estimated to be free now: the bucket's level less the in-flight reservations.

        The bucket holds at most `maximumAvailable` before it has been charged for the
        requests in flight, so refill beyond `maximum - in flight` is not counted: a burst
        of requests Shopify gets late, all at once, must still fit.
        """
        known = self._known
        if known is None:
            return 0.0
        elapsed = max(0.0, self._clock() - self._at)
        cap = known.maximum_available - self._in_flight
        return min(cap, self._level + elapsed * known.restore_rate)

    async def reserve(self, cost: float) -> None:
        """Wait until the bucket can pay `cost`, then take it out."""
        async with self._turn:
            while True:
                pause = self._paused_until - self._clock()
                if pause > 0:
                    await self._sleep(pause)
                    continue
                known = self._known
                if known is None:
                    if not self._probing:
                        self._probing = True
                        self._in_flight += cost
                        return
                    await self._next_answer()
                    continue
                need = min(cost, known.maximum_available)
                now = self._clock()
                level = self.available()
                if level >= need - _EPSILON:
                    self._level, self._at = level - cost, now
                    self._in_flight += cost
                    return
                if self._in_flight and known.maximum_available - self._in_flight < need:
                    await self._next_answer()  # only an answer makes room
                    continue
                # At least a millisecond: a wait shorter than the clock's resolution would
                # never see the level move.
                await self._sleep(max(_MIN_WAIT, (need - level) / known.restore_rate))

    async def _next_answer(self) -> None:
        self._answered.clear()
        await self._answered.wait()

    def settle(self, cost: float, status: ThrottleStatus | None) -> None:
        """A request that reserved `cost` was answered; `status` is what the answer reported."""
        self._in_flight = max(0.0, self._in_flight - cost)
        if status is not None:
            reported = status.currently_available - self._in_flight
            if self._known is not None:
                # Answers can arrive out of order: an older, fuller report must not raise
                # the level. Only time raises it; a report can only lower it.
                reported = min(reported, self.available())
            self._known = status
            self._level = reported
            self._at = self._clock()
        elif self._known is not None:
            # No report (a transport failure): the points were probably not spent.
            self._level = min(self._known.maximum_available, self.available() + cost)
            self._at = self._clock()
        self._probing = False
        self._answered.set()

    def paused_for(self) -> float:
        """Seconds left of a pause Shopify asked for (0 when none)."""
        return max(0.0, self._paused_until - self._clock())

    def pause(self, seconds: float) -> None:
        """Shopify asked every caller to wait (`Retry-After`): nobody sends before then."""
        self._paused_until = max(self._paused_until, self._clock() + seconds)

    def wait_for(self, cost: float, status: ThrottleStatus) -> float:
        """Seconds until a bucket at `status` can pay `cost` (a THROTTLED answer's back-off)."""
        need = min(cost, status.maximum_available)
        return max(0.0, (need - status.currently_available) / status.restore_rate)
