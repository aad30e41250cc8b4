"""The delivery log and its schema, on SQLite and on a real PostgreSQL.

Outcome precedence (reports never overwrite, a late failure never undoes a
processed delivery), the body kept only while failed, paging, pruning on a fake
clock, redaction, and versioned schema upgrades. The service itself is then
run over PostgreSQL once.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text

from backends import FakeClock
from kvcache import KVConfigError
from kvcache.shopify.db import SCHEMA_VERSION, migrate, open_database
from kvcache.shopify.deliveries import DeliveryLog
from kvcache.shopify.webhooks import Delivery, parse_delivery
from postgres_server import fresh_postgres_database
from service import deliver, running, settings_for, signed_headers

SHOP = "demo.myshopify.com"


@pytest.fixture
async def log(database_url: str, clock: FakeClock) -> AsyncIterator[DeliveryLog]:
    engine = open_database(database_url)
    await migrate(engine)
    try:
        yield DeliveryLog(engine, clock=clock)
    finally:
        await engine.dispose()


def delivery(webhook_id: str, payload: object = None, topic: str = "customers/update") -> Delivery:
    body = json.dumps(payload if payload is not None else {"id": 7}).encode()
    return parse_delivery(signed_headers(body, topic, SHOP, webhook_id=webhook_id), body)


async def test_outcome_precedence_and_body(log: DeliveryLog) -> None:
    d = delivery("w-1")
    await log.record(d, "in_progress")
    await log.record(d, "failed", duration=0.01, error="RuntimeError: boom")
    [(row, body)] = await log.find("w-1")
    assert (row.outcome, row.attempts, row.error, body) == (
        "failed",
        2,
        "RuntimeError: boom",
        d.body,
    )
    await log.record(d, "processed", duration=0.002)
    await log.record(d, "duplicate")
    await log.record(d, "failed", error="a slow failure that lost the race")
    [(row, body)] = await log.find("w-1")
    assert (row.outcome, row.attempts, row.error, body) == ("processed", 5, None, None)
    assert row.duration_ms == pytest.approx(2.0)
    assert row.event_id == d.event_id and row.topic == "customers/update"


@pytest.mark.parametrize("before", ["failed", "in_progress"])
async def test_a_duplicate_settles_a_delivery_whose_processing_row_was_lost(
    log: DeliveryLog, before: str
) -> None:
    # The attempt that completed the claim died before its row was written: the next
    # copy answers duplicate, and the log must stop showing the delivery as unsettled.
    d = delivery("w-2")
    await log.record(d, before, error="RuntimeError: boom" if before == "failed" else None)
    await log.record(d, "duplicate")
    await log.record(d, "failed", error="a slow failure that lost the race")
    await log.record(d, "in_progress")
    [(row, body)] = await log.find("w-2")
    assert (row.outcome, row.attempts, row.error, body) == ("duplicate", 4, None, None)


async def test_pages_newest_first_with_filters(log: DeliveryLog, clock: FakeClock) -> None:
    for index in range(7):
        clock.advance(1)
        topic = "shop/update" if index % 2 else "customers/update"
        await log.record(delivery(f"w-{index}", topic=topic), "processed")
    rows, cursor = await log.page(limit=3)
    assert [row.webhook_id for row in rows] == ["w-6", "w-5", "w-4"] and cursor is not None
    rows, cursor = await log.page(limit=3, cursor=cursor)
    assert [row.webhook_id for row in rows] == ["w-3", "w-2", "w-1"]
    rows, cursor = await log.page(limit=3, cursor=cursor)
    assert [row.webhook_id for row in rows] == ["w-0"] and cursor is None
    rows, _ = await log.page(topic="shop/update", outcome="processed")
    assert [row.webhook_id for row in rows] == ["w-5", "w-3", "w-1"]
    assert (await log.page(shop="other.myshopify.com"))[0] == []
    with pytest.raises(ValueError, match="limit"):
        await log.page(limit=0)


async def test_prune_after_retention(log: DeliveryLog, clock: FakeClock) -> None:
    await log.record(delivery("old"), "processed")
    clock.advance(6 * 86400)
    await log.record(delivery("new"), "processed")
    clock.advance(86400 + 1)
    assert await log.prune(7 * 86400) == 1
    assert [row.webhook_id for row in (await log.page())[0]] == ["new"]


async def test_redact_a_customer_or_a_shop(log: DeliveryLog) -> None:
    await log.record(delivery("a", {"id": 7}), "processed")
    await log.record(delivery("b", {"id": 8}), "processed")
    redact = delivery("r", {"customer": {"id": 7}}, topic="customers/redact")
    await log.record(redact, "processed")
    assert await log.redact(SHOP, "7", keep="r") == 1
    assert sorted(row.webhook_id for row in (await log.page())[0]) == ["b", "r"]
    assert await log.redact(SHOP, keep="r") == 1
    assert [row.webhook_id for row in (await log.page())[0]] == ["r"]


async def test_migrate_is_idempotent_and_refuses_a_newer_schema(database_url: str) -> None:
    engine = open_database(database_url)
    try:
        assert await migrate(engine) == 0
        assert await migrate(engine) == SCHEMA_VERSION
        async with engine.begin() as conn:
            await conn.execute(text("UPDATE kvcache_schema SET version = 99"))
        with pytest.raises(KVConfigError, match="newer than this kvcache"):
            await migrate(engine)
    finally:
        await engine.dispose()


def test_bad_database_urls() -> None:
    with pytest.raises(KVConfigError, match="not a SQLAlchemy URL"):
        open_database("not a url")
    with pytest.raises(KVConfigError, match="use sqlite"):
        open_database("mysql+aiomysql://x/y")


async def test_the_service_on_postgresql(tmp_path: Path, postgres_url: str) -> None:
    url = await fresh_postgres_database(postgres_url)
    with running(settings_for(tmp_path, database_url=url)) as server:
        async with httpx.AsyncClient(base_url=server.url) as client:
            first = await deliver(client, "customers/update", SHOP, {"id": 1}, webhook_id="pg-1")
            again = await deliver(client, "customers/update", SHOP, {"id": 1}, webhook_id="pg-1")
            assert [first.json()["outcome"], again.json()["outcome"]] == ["processed", "duplicate"]
            [row] = (await client.get("/api/webhooks")).json()["deliveries"]
            assert (row["webhookId"], row["attempts"], row["outcome"]) == ("pg-1", 2, "processed")
            assert (await client.get("/healthz")).status_code == 200


async def test_closing_while_a_batch_is_being_written_loses_no_row(log: DeliveryLog) -> None:
    """close() lets a flush under way finish (cancelling it inside its transaction could
    leave that connection holding the database's write lock), then writes the rest."""
    log.start()
    for i in range(3000):
        await log.record(delivery(f"batch-{i}"), "processed", duration=0.001)
    for _ in range(2000):  # until the writer is inside a flush
        if log._lock.locked():
            break
        await asyncio.sleep(0.001)
    assert log._lock.locked()
    for i in range(100):  # more while it writes
        await log.record(delivery(f"late-{i}"), "processed", duration=0.001)
    await log.close()
    async with log.engine.connect() as conn:
        count = (await conn.execute(text("SELECT count(*) FROM webhook_deliveries"))).scalar()
    assert count == 3100
