"""`Cache.lookup`: get_or_set that tells a hit from a fill, counted once either way."""

from __future__ import annotations

import asyncio

from kvcache import Cache, KVStore


async def test_a_fill_then_a_hit_count_one_miss_and_one_hit(kv: KVStore) -> None:
    cache = Cache(kv)
    calls = 0

    async def fetch() -> dict[str, int]:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.01)
        return {"n": calls}

    first = await asyncio.gather(*(cache.lookup("k:1", fetch) for _ in range(10)))
    assert first == [({"n": 1}, False)] * 10 and calls == 1
    assert await cache.lookup("k:1", fetch) == ({"n": 1}, True)
    stats = cache.stats()
    assert (stats.hits, stats.misses, stats.fetches) == (1, 10, 1)


async def test_a_cached_none_is_a_hit(kv: KVStore) -> None:
    cache = Cache(kv)

    async def nothing() -> None:
        return None

    assert await cache.lookup("k:none", nothing, negative_ttl=60) == (None, False)
    assert await cache.lookup("k:none", nothing, negative_ttl=60) == (None, True)
    assert (cache.stats().hits, cache.stats().misses) == (1, 1)
