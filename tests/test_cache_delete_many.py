"""`Cache.delete_many` (one store write for several invalidations) and what a webhook's
invalidation does when the cache skipped or failed it."""

from __future__ import annotations

import pytest

from backends import FakeClock
from kvcache import KVBackendError
from kvcache.cache import Cache, CircuitBreaker
from kvcache.cache._fence import BURY_MAX, TOMBSTONE_METADATA
from kvcache.kv.memory import MemoryStore
from kvcache.kv.types import Record
from kvcache.shopify import keys
from kvcache.shopify.invalidation import (
    InvalidationIncomplete,
    cache_customer,
    forget_customer,
    purge_shop,
)

SHOP = "demo.myshopify.com"


class CountingStore(MemoryStore):
    """Counts `put_many` calls, and fails every primitive while `down`."""

    def __init__(self) -> None:
        super().__init__()
        self.put_many_calls = 0
        self.down = False

    async def _put_many(self, records: list[Record]) -> None:
        self.put_many_calls += 1
        if self.down:
            raise KVBackendError("connection refused", backend="counting")
        await super()._put_many(records)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(start=0.0)


@pytest.fixture
def store() -> CountingStore:
    return CountingStore()


def cache_on(store: CountingStore, clock: FakeClock) -> Cache:
    return Cache(store, breaker=CircuitBreaker(threshold=3, cooldown=10, clock=clock))


async def test_one_store_write_tombstones_every_key(store: CountingStore, clock: FakeClock) -> None:
    cache = cache_on(store, clock)
    for name in ("a:1", "a:2", "b:1"):
        await cache.set(name, name)
    before = store.put_many_calls
    assert await cache.delete_many(["a:1", "a:2", "b:1", "never:set"]) == 4
    assert store.put_many_calls == before + 1
    for name in ("a:1", "a:2", "b:1", "never:set"):
        assert await cache.get(name) is None
        found = await store.get_with_metadata(name)
        assert found.metadata == TOMBSTONE_METADATA  # a tombstone: older fills cannot store
    stats = cache.stats()
    assert (stats.deletes, stats.errors) == (4, 0)
    assert (stats.by_family["a"].deletes, stats.by_family["b"].deletes) == (2, 1)
    assert await cache.delete_many([]) == 0


async def test_more_keys_than_one_write_takes(store: CountingStore, clock: FakeClock) -> None:
    cache = cache_on(store, clock)
    names = [f"k:{i}" for i in range(BURY_MAX + 3)]
    before = store.put_many_calls
    assert await cache.delete_many(names) == len(names)
    assert store.put_many_calls == before + 2


async def test_a_failed_write_is_counted_and_reported(
    store: CountingStore, clock: FakeClock
) -> None:
    cache = cache_on(store, clock)
    store.down = True
    assert await cache.delete_many(["a:1", "a:2"]) == 0  # fails open: no exception
    assert (cache.stats().errors, cache.stats().deletes) == (2, 0)


async def test_a_skipped_write_is_reported(store: CountingStore, clock: FakeClock) -> None:
    cache = cache_on(store, clock)
    store.down = True
    for _ in range(3):
        await cache.delete("x:1")  # three failures open the breaker
    store.down = False
    calls = store.put_many_calls
    assert await cache.delete_many(["a:1", "a:2"]) == 0
    assert store.put_many_calls == calls  # the breaker skipped the store
    assert cache.stats().skipped == 2
    with pytest.raises(TypeError):
        await cache.delete_many(["a:1", 2])  # type: ignore[list-item]
    clock.advance(10)
    assert await cache.delete_many(["a:1", "a:2"]) == 2  # the probe, then closed again


async def test_an_invalidation_the_breaker_skipped_fails_the_delivery(
    store: CountingStore, clock: FakeClock
) -> None:
    """The store answers, but the cache skipped the deletes: the handler must not pass."""
    cache = Cache(
        store,
        family=keys.family,
        breaker=CircuitBreaker(threshold=3, cooldown=10, clock=clock),
    )
    await cache_customer(cache, SHOP, {"id": 3, "email": "c@example.com"}, ttl=3600)
    store.down = True
    for _ in range(3):
        await cache.delete("other:1")
    store.down = False
    with pytest.raises(InvalidationIncomplete):
        await forget_customer(cache, SHOP, 3, ["c@example.com"])
    with pytest.raises(InvalidationIncomplete):
        await purge_shop(cache, SHOP)
    clock.advance(10)
    assert await forget_customer(cache, SHOP, 3, ["c@example.com"]) == 3
    assert await cache.get(keys.customer_email_key(SHOP, "c@example.com")) is None
