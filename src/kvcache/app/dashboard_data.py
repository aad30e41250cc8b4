"""What `GET /api/dashboard` answers: the page's charts, tables and figures in one JSON.

The charts come from the per-minute history (`History`, summed over workers in
the app database), on one time axis of whole minutes ending with the current one,
every series filled for every minute (0, or null for a hit rate with no look-up):

    hitRate     cache{family,counter}          (hits + stale_hits) / look-ups per family
    ops         kv_ops{namespace,op,family}    billable operations per second per namespace
                                               (read, write, delete, list; not the meter's
                                               rapid_write and list_key, which detail them)
    webhooks    webhooks{topic,outcome}        deliveries answered per minute

The current minute is still filling: its operations per second are over the
seconds elapsed in it, not over 60. `stats` is exactly `/api/cache/stats`;
`deliveries` the newest rows of the delivery log; `health` the store's.
"""

from __future__ import annotations

import asyncio
import os
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from ..shopify.history import Point, minute_of
from .metrics import stats_json
from .state import State

__all__ = [
    "LATEST",
    "MAX_MINUTES",
    "SharedAnswers",
    "dashboard_json",
    "hit_rates",
    "ops_rates",
    "webhook_counts",
]

MAX_MINUTES = 7 * 24 * 60
BILLED_OPS = ("read", "write", "delete", "list")
LATEST = 20
Axis = list[int]


def _axis(now: float, minutes: int) -> Axis:
    last = minute_of(now)
    return [last - 60 * back for back in range(minutes - 1, -1, -1)]


def _columns(axis: Axis) -> dict[int, int]:
    return {minute: index for index, minute in enumerate(axis)}


def hit_rates(points: Iterable[Point], axis: Axis) -> list[dict[str, Any]]:
    """[{family, rates}], a rate per minute of `axis` (None for a minute with no look-up)."""
    column = _columns(axis)
    served: dict[str, list[float]] = defaultdict(lambda: [0.0] * len(axis))
    missed: dict[str, list[float]] = defaultdict(lambda: [0.0] * len(axis))
    for point in points:
        at = column.get(point.minute)
        counter, family = point.labels.get("counter"), point.labels.get("family", "")
        if at is not None and counter in ("hits", "stale_hits", "misses"):
            row = missed if counter == "misses" else served
            row[family][at] += point.value
    out = []
    for family in sorted(served.keys() | missed.keys()):
        pairs = zip(served[family], missed[family], strict=True)
        out.append({"family": family, "rates": [h / (h + m) if h + m else None for h, m in pairs]})
    return out


def ops_rates(points: Iterable[Point], axis: Axis, now: float) -> list[dict[str, Any]]:
    """[{namespace, perSecond}]: the namespace's billable operations per second of each minute."""
    column = _columns(axis)
    counts: dict[str, list[float]] = defaultdict(lambda: [0.0] * len(axis))
    for point in points:
        at = column.get(point.minute)
        if at is not None and point.labels.get("op") in BILLED_OPS:
            counts[point.labels.get("namespace", "")][at] += point.value
    elapsed = [60.0] * len(axis)
    if axis:
        elapsed[-1] = max(1.0, now - axis[-1])
    return [
        {
            "namespace": name,
            "perSecond": [n / s for n, s in zip(counts[name], elapsed, strict=True)],
        }
        for name in sorted(counts)
    ]


def webhook_counts(points: Iterable[Point], axis: Axis) -> list[dict[str, Any]]:
    """[{topic, outcome, counts}]: deliveries answered per minute."""
    column = _columns(axis)
    counts: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0] * len(axis))
    for point in points:
        at = column.get(point.minute)
        if at is not None:
            key = (point.labels.get("topic", ""), point.labels.get("outcome", ""))
            counts[key][at] += int(point.value)
    return [
        {"topic": topic, "outcome": outcome, "counts": counts[(topic, outcome)]}
        for topic, outcome in sorted(counts)
    ]


def _backend(store: str | None) -> str:
    """The store's kind, never its URL (a Redis URL may carry a password)."""
    return "sqlite" if store is None else store.partition(":")[0]


async def dashboard_json(state: State, minutes: int) -> dict[str, Any]:
    """Everything the page shows, for the last `minutes` minutes."""
    service = state.service
    state.push_cache()
    service.record_meter()  # this worker's latest store operations too
    sums = state.metrics.cache_sums()
    now = service.history.clock()
    axis = _axis(now, minutes)
    history = service.history
    cache = await history.points("cache", since=axis[0])
    ops = await history.points("kv_ops", since=axis[0])
    webhooks = await history.points("webhooks", since=axis[0])
    rows, _ = await service.log.page(limit=LATEST)
    breaker = service.breaker
    return {
        "now": now,
        "minutes": axis,
        "stats": stats_json(sums),
        "hitRate": hit_rates(cache, axis),
        "ops": ops_rates(ops, axis, now),
        "webhooks": webhook_counts(webhooks, axis),
        "deliveries": [row.as_json() for row in rows],
        "health": {
            "backend": _backend(service.settings.store),
            "breaker": breaker.state,
            "consecutiveFailures": breaker.failures,
            "trips": breaker.trips,
            "errors": int(sum(row["errors"] for row in sums.values())),
            "skipped": int(sum(row["skipped"] for row in sums.values())),
            "worker": os.getpid(),
        },
    }


class SharedAnswers:
    """Requests for one window that arrive while its answer is being computed share it.

    They would all get the same figures (the history changes per minute, the counters a
    few times a second), so a crowd of open pages costs one computation at a time, not
    one each. A waiter that goes away does not cancel the computation for the others.
    """

    def __init__(self) -> None:
        self._running: dict[int, asyncio.Task[dict[str, Any]]] = {}

    async def get(
        self, minutes: int, compute: Callable[[], Awaitable[dict[str, Any]]]
    ) -> dict[str, Any]:
        """The running computation's answer for `minutes`, or `compute()`'s."""
        task = self._running.get(minutes)
        if task is None:
            task = asyncio.ensure_future(compute())
            self._running[minutes] = task
            task.add_done_callback(lambda done: self._settle(minutes, done))
        return await asyncio.shield(task)

    def _settle(self, minutes: int, done: asyncio.Task[dict[str, Any]]) -> None:
        if self._running.get(minutes) is done:
            del self._running[minutes]
        if not done.cancelled():
            done.exception()  # retrieved here too: no "never retrieved" warning if all left
