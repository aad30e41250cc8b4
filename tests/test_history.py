"""The per-minute history in the app database, on SQLite and on a real PostgreSQL.

Two `History` objects on one database stand for two workers: their counters add
up in one row per minute, a gauge keeps its last value, a failed write keeps the
buffer for the next one, and rows older than the retention are pruned.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from backends import FakeClock
from kvcache.shopify.db import migrate, open_database
from kvcache.shopify.history import History, labels_key, minute_of

T0 = 1_780_000_020.0  # 20 s into a minute


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = open_database(database_url)
    await migrate(engine)
    try:
        yield engine
    finally:
        await engine.dispose()


async def test_two_workers_add_up_per_minute(engine: AsyncEngine) -> None:
    clock = FakeClock(T0)
    one, two = History(engine, clock=clock), History(engine, clock=clock)
    ops = {"namespace": "CACHE", "op": "read"}
    one.add("kv_ops", ops, 3)
    two.add("kv_ops", ops, 4)
    one.add("kv_ops", {"namespace": "CACHE", "op": "write"})
    await one.flush()
    await two.flush()
    clock.advance(60)
    two.add("kv_ops", ops, 5)
    one.add("kv_ops", ops, 0)  # nothing to write
    await two.flush()  # a reader flushes only its own buffer
    points = await one.points("kv_ops", since=T0)
    assert [(p.minute - minute_of(T0), p.labels, p.value) for p in points] == [
        (0, ops, 7.0),
        (0, {"namespace": "CACHE", "op": "write"}, 1.0),
        (60, ops, 5.0),
    ]
    assert await two.totals("kv_ops", since=T0) == {
        labels_key(ops): 12.0,
        labels_key({"op": "write", "namespace": "CACHE"}): 1.0,
    }
    assert await one.points("kv_ops", since=T0 + 60, until=T0 + 60) == points[2:]
    assert await one.first_minute("kv_ops") == minute_of(T0)
    assert await one.first_minute("nothing") is None


async def test_a_gauge_keeps_the_last_value_of_its_minute(engine: AsyncEngine) -> None:
    clock = FakeClock(T0)
    one, two = History(engine, clock=clock), History(engine, clock=clock)
    one.set("stored_bytes", {"namespace": "CACHE"}, 100)
    await one.flush()
    two.set("stored_bytes", {"namespace": "CACHE"}, 250)
    await two.flush()
    [point] = await one.points("stored_bytes", since=T0)
    assert point.value == 250.0


async def test_a_failed_write_keeps_the_buffer(engine: AsyncEngine) -> None:
    history = History(engine, clock=FakeClock(T0))
    history.add("webhooks", {"topic": "orders/create", "outcome": "processed"}, 2)
    history.set("stored_bytes", {"namespace": "CACHE"}, 9)
    async with engine.begin() as conn:
        await conn.execute(text("ALTER TABLE metric_minutes RENAME TO parked"))
    with pytest.raises(Exception, match="metric_minutes"):
        await history.flush()
    history.add("webhooks", {"topic": "orders/create", "outcome": "processed"}, 1)
    async with engine.begin() as conn:
        await conn.execute(text("ALTER TABLE parked RENAME TO metric_minutes"))
    assert [p.value for p in await history.points("webhooks", since=T0)] == [3.0]
    assert [p.value for p in await history.points("stored_bytes", since=T0)] == [9.0]


async def test_prune_after_the_retention(engine: AsyncEngine) -> None:
    clock = FakeClock(T0)
    history = History(engine, clock=clock, retention=7 * 86400)
    history.add("cache", {"family": "customer:email", "counter": "hits"}, at=T0 - 8 * 86400)
    history.add("cache", {"family": "customer:email", "counter": "hits"}, at=T0 - 86400)
    await history.flush()
    assert await history.prune() == 1
    assert [p.minute for p in await history.points("cache", since=0)] == [minute_of(T0 - 86400)]


async def test_the_background_writer(engine: AsyncEngine) -> None:
    history = History(engine, flush_every=0.01)
    history.start()
    history.add("webhooks", {"topic": "shop/update", "outcome": "ignored"})
    reader = History(engine)
    for _ in range(500):
        if await reader.totals("webhooks", since=0):
            break
        await asyncio.sleep(0.01)
    assert list((await reader.totals("webhooks", since=0)).values()) == [1.0]
    history.add("webhooks", {"topic": "shop/update", "outcome": "ignored"})
    await history.close()
    assert list((await reader.totals("webhooks", since=0)).values()) == [2.0]


def test_bad_names_and_labels() -> None:
    engine = open_database("sqlite+aiosqlite:///:memory:")
    history = History(engine)
    with pytest.raises(ValueError, match="series"):
        history.add("", {})
    with pytest.raises(ValueError, match="labels"):
        history.add("x", {"k": "v" * 600})
