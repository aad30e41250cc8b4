"""Handlers behind a real uvicorn: invalidation, compliance topics, user handlers, claims.

The cache is checked through a second connection to the same SQLite store, as
another process of the app would see it.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

import kvcache
from kvcache import Cache, KVStore
from kvcache.cache._fence import TOMBSTONE_METADATA
from kvcache.shopify import keys
from kvcache.shopify.db import open_database
from kvcache.shopify.deliveries import DeliveryLog
from kvcache.shopify.invalidation import cache_customer, forget_customer, purge_shop
from redis_server import RedisServer
from service import Server, deliver, running, settings_for
from webhook_handlers import DIR_ENV, read_runs

SHOP, OTHER = "demo.myshopify.com", "other.myshopify.com"


@pytest.fixture
def server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Server]:
    monkeypatch.setenv(DIR_ENV, str(tmp_path))
    settings = settings_for(tmp_path, handlers=("webhook_handlers",), webhook_lease_ttl=5)
    with running(settings) as started:
        yield started


@pytest.fixture
async def client(server: Server) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        yield http


@pytest.fixture
async def cache(server: Server) -> AsyncIterator[Cache]:
    async with kvcache.open_kv(server.settings.store, namespace="CACHE") as kv:
        yield Cache(kv, family=keys.family)


async def cached(kv: KVStore, prefix: str) -> list[str]:
    """The keys under `prefix` that hold a cache entry (an invalidation's tombstone is none)."""
    names, cursor = [], None
    while True:
        page = await kv.list(prefix=prefix, cursor=cursor)
        names += [info.name for info in page.keys if info.metadata != TOMBSTONE_METADATA]
        if page.list_complete:
            return names
        cursor = page.cursor


async def test_update_that_changes_email_leaves_nothing_under_the_old(
    client: httpx.AsyncClient, cache: Cache
) -> None:
    old = {"id": 7, "email": "Old@Example.com", "firstName": "Ann"}
    await cache_customer(cache, SHOP, old, ttl=3600)
    await cache_customer(cache, OTHER, old, ttl=3600)  # same e-mail, another shop
    assert await cache.get(keys.customer_email_key(SHOP, "old@example.com")) == old
    answer = await deliver(client, "customers/update", SHOP, {"id": 7, "email": "new@example.com"})
    assert answer.json()["outcome"] == "processed"
    assert await cached(cache.kv, keys.shop_prefix(SHOP)) == []
    assert await cache.get(keys.customer_email_key(OTHER, "old@example.com")) == old


async def test_delete_without_email_uses_the_index(client: httpx.AsyncClient, cache: Cache) -> None:
    for email in ("one@example.com", "two@example.com"):  # cached under two addresses over time
        await cache_customer(cache, SHOP, {"id": 9, "email": email}, ttl=3600)
    await cache.set(keys.shop_config_key(SHOP), {"shopName": "Demo"})
    payload = {"id": 9, "admin_graphql_api_id": "gid://shopify/Customer/9", "tax_exemptions": []}
    assert (await deliver(client, "customers/delete", SHOP, payload)).status_code == 200
    assert await cached(cache.kv, keys.shop_prefix(SHOP)) == [keys.shop_config_key(SHOP)]


async def test_shop_update_drops_the_config(client: httpx.AsyncClient, cache: Cache) -> None:
    await cache.set(keys.shop_config_key(SHOP), {"shopName": "Demo"})
    await cache.set(keys.shop_config_key(OTHER), {"shopName": "Other"})
    assert (
        await deliver(client, "shop/update", SHOP, {"id": 1, "name": "Demo"})
    ).status_code == 200
    assert await cache.get(keys.shop_config_key(SHOP)) is None
    assert await cache.get(keys.shop_config_key(OTHER)) == {"shopName": "Other"}


async def test_uninstall_purges_2500_keys_of_the_shop_only(
    client: httpx.AsyncClient, cache: Cache
) -> None:
    for shop in (SHOP, OTHER):
        entries = [
            {"key": keys.customer_email_key(shop, f"c{i}@example.com"), "value": "|{}"}
            for i in range(2500)
        ]
        await cache.kv.put_many(entries)
    answer = await deliver(client, "app/uninstalled", SHOP, {"id": 1, "myshopify_domain": SHOP})
    assert answer.json()["outcome"] == "processed"
    assert await cached(cache.kv, keys.shop_prefix(SHOP)) == []
    assert len(await cached(cache.kv, keys.shop_prefix(OTHER))) == 2500
    stats = (await client.get("/api/cache/stats")).json()
    assert stats["by_family"]["customer:email"]["deletes"] == 2500
    assert set(stats) == {"hits", "misses", "sets", "deletes", "errors", "hitRate", "by_family"}


async def test_compliance_topics(server: Server, client: httpx.AsyncClient, cache: Cache) -> None:
    customer = {"id": 191167, "email": "john@example.com", "phone": "555-625-1199"}
    await cache_customer(cache, SHOP, customer, ttl=3600)
    await deliver(client, "customers/update", SHOP, {"id": 191167, "email": "john@example.com"})
    await deliver(client, "customers/update", SHOP, {"id": 5, "email": "someone@example.com"})
    request = {
        "shop_id": 954889,
        "shop_domain": SHOP,
        "orders_requested": [299938],
        "customer": customer,
        "data_request": {"id": 9999},
    }
    answer = await deliver(client, "customers/data_request", SHOP, request)
    assert (answer.status_code, answer.json()["outcome"]) == (200, "processed")
    log = DeliveryLog(open_database(server.settings.database_url))
    try:
        [recorded] = await log.data_requests(SHOP)
        assert (recorded["customer_id"], recorded["request_id"]) == ("191167", "9999")
        redact = {"shop_id": 954889, "shop_domain": SHOP, "customer": customer}
        assert (await deliver(client, "customers/redact", SHOP, redact)).status_code == 200
        assert await log.data_requests(SHOP) == []
    finally:
        await log.engine.dispose()
    rows = (await client.get("/api/webhooks", params={"shop": SHOP})).json()["deliveries"]
    # Every row about the redacted customer is gone; the other customer's update stays.
    assert Counter(row["topic"] for row in rows) == {"customers/update": 1, "customers/redact": 1}
    assert await cached(cache.kv, keys.shop_prefix(SHOP)) == []

    await cache.set(keys.shop_config_key(SHOP), {"shopName": "Demo"})
    shop_redact = {"shop_id": 954889, "shop_domain": SHOP}
    assert (await deliver(client, "shop/redact", SHOP, shop_redact)).status_code == 200
    rows = (await client.get("/api/webhooks", params={"shop": SHOP})).json()["deliveries"]
    assert [row["topic"] for row in rows] == ["shop/redact"]
    assert await cached(cache.kv, keys.shop_prefix(SHOP)) == []


async def test_a_hundred_concurrent_copies_run_the_handler_once(
    client: httpx.AsyncClient, tmp_path: Path
) -> None:
    copies = [
        deliver(client, "orders/create", SHOP, {"id": 1, "sleep": 0.3}, webhook_id="order-1")
        for _ in range(100)
    ]
    answers = await asyncio.gather(*copies)
    outcomes = Counter((a.status_code, a.json()["outcome"]) for a in answers)
    assert outcomes[(200, "processed")] == 1
    assert set(outcomes) <= {(200, "processed"), (200, "duplicate"), (409, "in_progress")}
    busy = [a for a in answers if a.status_code == 409]
    assert busy and all(int(a.headers["Retry-After"]) >= 1 for a in busy)
    assert [row[0] for row in read_runs(tmp_path)] == ["start", "done"]


async def test_a_failed_handler_runs_again_on_the_retry(
    client: httpx.AsyncClient, tmp_path: Path
) -> None:
    payload = {"id": 2, "fail_first": True}
    first = await deliver(client, "orders/create", SHOP, payload, webhook_id="order-2")
    assert (first.status_code, first.json()["outcome"]) == (500, "failed")
    [row] = (await client.get("/api/webhooks")).json()["deliveries"]
    assert row["outcome"] == "failed" and "first delivery" in row["error"]
    retry = await deliver(client, "orders/create", SHOP, payload, webhook_id="order-2")
    assert (retry.status_code, retry.json()["outcome"]) == (200, "processed")
    again = await deliver(client, "orders/create", SHOP, payload, webhook_id="order-2")
    assert again.json()["outcome"] == "duplicate"
    assert [kind for kind, *_ in read_runs(tmp_path)] == ["start", "fail", "start", "done"]
    [row] = (await client.get("/api/webhooks")).json()["deliveries"]
    assert (row["outcome"], row["attempts"], row["error"]) == ("processed", 3, None)


async def test_a_store_that_is_down_is_503_never_200(
    tmp_path: Path, durable_redis: RedisServer
) -> None:
    settings = settings_for(tmp_path, store=durable_redis.url)
    with running(settings) as server:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
            ok = await deliver(client, "customers/update", SHOP, {"id": 1})
            assert ok.status_code == 200
            durable_redis.kill()
            down = await deliver(client, "customers/update", SHOP, {"id": 1})
            assert down.status_code == 503 and "Retry-After" in down.headers
            assert (await client.get("/healthz")).status_code == 503


def test_admin_token_is_required_when_set(tmp_path: Path) -> None:
    with running(settings_for(tmp_path, admin_token="s3cret")) as server:
        with httpx.Client(base_url=server.url) as client:
            for path in ("/api/webhooks", "/api/cache/stats", "/metrics"):
                assert client.get(path).status_code == 401
                bad = client.get(path, headers={"Authorization": "Bearer nope"})
                assert bad.status_code == 401
                good = client.get(path, headers={"Authorization": "Bearer s3cret"})
                assert good.status_code == 200
            assert client.get("/healthz").status_code == 200


async def test_invalidation_fails_when_the_store_is_down(durable_redis: RedisServer) -> None:
    """The cache fails open, but an invalidation that did not happen must not pass."""
    async with kvcache.open_kv(durable_redis.url, namespace="CACHE") as kv:
        cache = Cache(kv, family=keys.family)
        await cache_customer(cache, SHOP, {"id": 3, "email": "c@example.com"}, ttl=3600)
        assert await forget_customer(cache, SHOP, 3, ["c@example.com"]) == 3
        durable_redis.kill()
        with pytest.raises(kvcache.KVBackendError):
            await forget_customer(cache, SHOP, None, ["c@example.com"])
        with pytest.raises(kvcache.KVBackendError):
            await purge_shop(cache, SHOP)


def test_without_a_token_admin_routes_answer_loopback_only(server: Server) -> None:
    # uvicorn trusts X-Forwarded-For from 127.0.0.1 (a reverse proxy on the host), so this
    # is how a remote client reaches the service through one.
    remote = {"X-Forwarded-For": "203.0.113.5"}
    with httpx.Client(base_url=server.url) as client:
        for path in ("/api/webhooks", "/api/cache/stats", "/metrics"):
            assert client.get(path, headers=remote).status_code == 403
            assert client.get(path).status_code == 200
        assert client.get("/healthz", headers=remote).status_code == 200
