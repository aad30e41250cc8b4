"""Per-minute history in the app database: what the dashboard charts and the cost projection read.

A series is a name (`kv_ops`, `cache`, `webhooks`, ...) and a set of string labels.
Counters (`add`) accumulate in process and are written in batches, each row's
value growing by this worker's delta (`value = value + excluded.value`), so a
row is the sum over every worker and process sharing the database. Gauges
(`set`) replace the minute's value: the last writer wins, for figures that
belong to a shared thing (the bytes a store holds) rather than to a worker.

The minute is `int(t // 60) * 60`, seconds since the epoch, UTC. Rows are
pruned after `retention` (7 days by default) by `prune()`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine

from ._tasks import stop
from .db import metric_minutes

__all__ = ["History", "Point", "labels_key", "minute_of"]

RETENTION = 7 * 86400
FLUSH_EVERY = 5.0
MAX_SERIES = 64
MAX_LABELS = 512

logger = logging.getLogger(__name__)

_Key = tuple[int, str, str]


def minute_of(t: float) -> int:
    """The start of t's minute, in seconds since the epoch."""
    return int(t // 60) * 60


def labels_key(labels: Mapping[str, str]) -> str:
    """Canonical JSON of a label set: the same labels always make the same row."""
    text = json.dumps(dict(labels), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    if len(text) > MAX_LABELS:
        raise ValueError(f"labels {text[:60]!r}... are over {MAX_LABELS} characters")
    return text


@dataclass(frozen=True, slots=True)
class Point:
    """One minute of one series."""

    minute: int
    series: str
    labels: dict[str, str]
    value: float


class History:
    """Counters and gauges per minute, buffered in process, summed in the database."""

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        clock: Callable[[], float] = time.time,
        retention: float = RETENTION,
        flush_every: float = FLUSH_EVERY,
    ) -> None:
        self.engine = engine
        self.clock = clock
        self.retention = retention
        self.flush_every = flush_every
        insert = postgresql.insert if engine.dialect.name == "postgresql" else sqlite.insert
        self._add = _upsert(insert, lambda old, new: old + new)  # counters grow
        self._set = _upsert(insert, lambda old, new: new)  # gauges: the last writer wins
        self._counters: dict[_Key, float] = {}
        self._gauges: dict[_Key, float] = {}
        self._lock = asyncio.Lock()
        self._writer: asyncio.Task[None] | None = None

    def _key(self, series: str, labels: Mapping[str, str], at: float | None) -> _Key:
        if not series or len(series) > MAX_SERIES:
            raise ValueError(f"series must be 1..{MAX_SERIES} characters, not {series!r}")
        return (minute_of(self.clock() if at is None else at), series, labels_key(labels))

    def add(
        self, series: str, labels: Mapping[str, str], value: float = 1.0, *, at: float | None = None
    ) -> None:
        """Count `value` more of a counter in the minute of `at` (now by default)."""
        if value:
            key = self._key(series, labels, at)
            self._counters[key] = self._counters.get(key, 0.0) + value

    def set(
        self, series: str, labels: Mapping[str, str], value: float, *, at: float | None = None
    ) -> None:
        """Set a gauge's value for the minute of `at` (now by default)."""
        self._gauges[self._key(series, labels, at)] = value

    def start(self) -> None:
        """Write from a background task every `flush_every` seconds (call inside the loop)."""
        if self._writer is None:
            self._writer = asyncio.create_task(self._write_every())

    async def close(self) -> None:
        """Stop the writer and write what is buffered."""
        writer, self._writer = self._writer, None
        await stop(writer)
        await self.flush()

    async def _write_every(self) -> None:
        while True:
            await asyncio.sleep(self.flush_every)
            try:
                await self.flush()
            except Exception as exc:  # kept in the buffers for the next try
                logger.warning("could not write the metric history: %s", exc)

    async def flush(self) -> None:
        """Write every buffered counter delta and gauge in one transaction."""
        async with self._lock:
            counters, self._counters = self._counters, {}
            gauges, self._gauges = self._gauges, {}
            if not counters and not gauges:
                return
            try:
                async with self.engine.begin() as conn:
                    if counters:
                        await conn.execute(self._add, _rows(counters.items()))
                    if gauges:
                        await conn.execute(self._set, _rows(gauges.items()))
            except BaseException:
                for key, value in counters.items():
                    self._counters[key] = self._counters.get(key, 0.0) + value
                for key, value in gauges.items():
                    self._gauges.setdefault(key, value)
                raise

    async def points(self, series: str, *, since: float, until: float | None = None) -> list[Point]:
        """Every row of a series from the minute of `since`, oldest first (flushes first)."""
        await self.flush()
        c = metric_minutes.c
        query = select(c.minute, c.labels, c.value).where(
            c.series == series, c.minute >= minute_of(since)
        )
        if until is not None:
            query = query.where(c.minute <= minute_of(until))
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query.order_by(c.minute, c.labels))).all()
        decoded: dict[str, dict[str, str]] = {}  # a label set repeats every minute: parse once
        for _, labels, _ in rows:
            if labels not in decoded:
                decoded[labels] = json.loads(labels)
        return [Point(int(m), series, dict(decoded[labels]), float(v)) for m, labels, v in rows]

    async def totals(self, series: str, *, since: float) -> dict[str, float]:
        """A counter's sum since `since`, by canonical label set (flushes first)."""
        await self.flush()
        c = metric_minutes.c
        query = (
            select(c.labels, func.sum(c.value))
            .where(c.series == series, c.minute >= minute_of(since))
            .group_by(c.labels)
        )
        async with self.engine.connect() as conn:
            return {labels: float(total) for labels, total in (await conn.execute(query)).all()}

    async def first_minute(self, series: str) -> int | None:
        """The oldest minute a series has a row for (how far back the history reaches)."""
        async with self.engine.connect() as conn:
            found = (
                await conn.execute(
                    select(func.min(metric_minutes.c.minute)).where(
                        metric_minutes.c.series == series
                    )
                )
            ).scalar()
        return None if found is None else int(found)

    async def prune(self, older_than: float | None = None) -> int:
        """Delete rows older than `older_than` seconds (the retention by default)."""
        horizon = minute_of(self.clock() - (self.retention if older_than is None else older_than))
        async with self.engine.begin() as conn:
            result = await conn.execute(
                delete(metric_minutes).where(metric_minutes.c.minute < horizon)
            )
        return int(result.rowcount or 0)


def _upsert(insert: Any, value: Callable[[Any, Any], Any]) -> Any:
    """INSERT ... ON CONFLICT (minute, series, labels) DO UPDATE SET value = value(old, new)."""
    stmt = insert(metric_minutes)
    c = metric_minutes.c
    return stmt.on_conflict_do_update(
        index_elements=[c.minute, c.series, c.labels],
        set_={"value": value(c.value, stmt.excluded.value)},
    )


def _rows(items: Iterable[tuple[_Key, float]]) -> list[dict[str, Any]]:
    return [
        {"minute": minute, "series": series, "labels": labels, "value": value}
        for (minute, series, labels), value in items
    ]
