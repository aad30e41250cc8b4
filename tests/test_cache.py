"""Cache basics over every store backend: hits and misses, TTLs, prefixes, deletion, local tier."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest

from backends import FakeClock, StoreFactory
from kvcache import KVStore, KVValidationError, Limits
from kvcache.cache import Cache, CacheTTLWarning
from kvcache.serializers import JSON


@pytest.fixture
async def relaxed(make_store: StoreFactory) -> KVStore:
    """A store that accepts TTLs down to 1 s."""
    return await make_store(limits=Limits.relaxed())


@pytest.mark.parametrize("value", [None, 0, 0.0, "", False, [], {}])
async def test_falsy_values_are_hits(kv: KVStore, value: Any) -> None:
    cache = Cache(kv)
    await cache.set("k", value)
    assert await cache.get("k", default="missing") == value
    assert type(await cache.get("k")) is type(value)
    stats = cache.stats()
    assert (stats.hits, stats.misses) == (2, 0)


async def test_miss_returns_default(kv: KVStore) -> None:
    cache = Cache(kv)
    assert await cache.get("absent") is None
    assert await cache.get("absent", default=42) == 42
    assert cache.stats().misses == 2


async def test_stored_form_is_the_envelope(kv: KVStore) -> None:
    cache = Cache(kv, prefix="app:")
    await cache.set("user:1", {"name": "Ada", "tags": ["x"]})
    await cache.set("nothing", None)
    assert await kv.get("app:user:1") == '|{"name":"Ada","tags":["x"]}'
    assert await kv.get("app:nothing") == "|null"
    assert await kv.get("user:1") is None


async def test_foreign_entry_is_a_miss_not_an_error_to_the_caller(kv: KVStore) -> None:
    cache = Cache(kv)
    await kv.put("plain", '{"a": 1}')  # written by something else, no envelope
    await kv.put("broken", "|{not json")
    assert await cache.get("plain", "miss") == "miss"
    assert await cache.get("broken", "miss") == "miss"
    assert cache.stats().errors == 2


async def test_non_serialisable_value_is_a_type_error_and_writes_nothing(kv: KVStore) -> None:
    cache = Cache(kv)
    with pytest.raises(TypeError, match="JSON-serialisable"):
        await cache.set("k", object())
    with pytest.raises(TypeError, match="JSON-serialisable"):
        await cache.set("k", math.nan)
    assert await kv.get("k") is None


async def test_bad_keys_raise(kv: KVStore) -> None:
    cache = Cache(kv, prefix="")
    with pytest.raises(KVValidationError, match="empty"):
        await cache.get("")
    with pytest.raises(KVValidationError, match="exceeds key length limit of 512"):
        await cache.set("x" * 513, 1)
    with pytest.raises(TypeError, match="key must be str"):
        await cache.get(7)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="key must be str"):
        await cache.delete(None)  # type: ignore[arg-type]


async def test_ttl_expires_with_the_clock(relaxed: KVStore, clock: FakeClock) -> None:
    cache = Cache(relaxed, default_ttl=100)
    await cache.set("default", 1)
    await cache.set("short", 2, ttl=10)
    await cache.set("forever", 3, ttl=None)
    clock.advance(9)
    assert await cache.get("short") == 2
    clock.advance(1)
    assert await cache.get("short") is None
    assert await cache.get("default") == 1
    clock.advance(90)
    assert await cache.get("default") is None
    clock.advance(10**6)
    assert await cache.get("forever") == 3


async def test_short_ttl_is_raised_to_the_store_minimum_once_per_call_site(
    kv: KVStore, clock: FakeClock
) -> None:
    cache = Cache(kv)  # Workers KV limits: at least 60 s
    with pytest.warns(CacheTTLWarning, match="ttl=30 is below .* minimum .* 60") as seen:
        for index in range(3):
            await cache.set(f"k{index}", index, ttl=30)
    assert len(seen) == 1
    assert seen[0].filename == __file__
    with pytest.warns(CacheTTLWarning):
        await cache.set("other-line", 1, ttl=5)
    clock.advance(59)
    assert await cache.get("k0") == 0
    clock.advance(1)
    assert await cache.get("k0") is None


async def test_short_default_ttl_warns_at_construction(kv: KVStore) -> None:
    with pytest.warns(CacheTTLWarning, match="default_ttl=10") as seen:
        cache = Cache(kv, default_ttl=10)
    assert seen[0].filename == __file__
    assert cache.default_ttl == 60


@pytest.mark.parametrize("ttl", [0, -1, math.inf])
async def test_invalid_ttl_is_refused(kv: KVStore, ttl: float) -> None:
    with pytest.raises(KVValidationError, match="Invalid ttl"):
        await Cache(kv).set("k", 1, ttl=ttl)


@pytest.mark.parametrize("ttl", ["60", True])
async def test_non_numeric_ttl_is_a_type_error(kv: KVStore, ttl: Any) -> None:
    with pytest.raises(TypeError, match="ttl must be a number"):
        await Cache(kv).set("k", 1, ttl=ttl)


async def test_jitter_spreads_expiries_within_the_ttl(kv: KVStore, clock: FakeClock) -> None:
    cache = Cache(kv, jitter=0.5)
    for index in range(40):
        await cache.set(f"j:{index}", index, ttl=1000)
    page = await kv.list(prefix="j:")
    expiries = {info.expiration for info in page.keys}
    assert len(expiries) > 5
    assert all(expiry is not None for expiry in expiries)
    assert min(e for e in expiries if e) >= clock.whole + 500
    assert max(e for e in expiries if e) <= clock.whole + 1000


async def test_delete(kv: KVStore) -> None:
    cache = Cache(kv)
    await cache.set("k", 1)
    await cache.delete("k")
    await cache.delete("never-there")
    assert await cache.get("k") is None
    assert cache.stats().deletes == 2


async def test_delete_prefix_walks_every_page(kv: KVStore) -> None:
    cache = Cache(kv, prefix="app:")
    for start in (0, 5_250):
        await kv.put_many(
            [
                {"key": f"app:customer:{index:05d}", "value": f"|{index}"}
                for index in range(start, start + 5_250)
            ]
        )
    await cache.set("customerx", "kept: no colon after the prefix")
    await cache.set("shop:1", "kept")
    await kv.put("customer:1", "outside the cache prefix")
    assert await cache.delete_prefix("customer:") == 10_500
    buried = (await kv.list(prefix="app:customer:", limit=10)).keys
    assert {info.metadata for info in buried} == {"kvcache:tombstone"}  # read as misses
    assert await cache.get("customer:00000", "miss") == "miss"
    assert await cache.get("customer:10499", "miss") == "miss"
    assert await cache.get("customerx") == "kept: no colon after the prefix"
    assert await cache.get("shop:1") == "kept"
    assert await kv.get("customer:1") == "outside the cache prefix"
    assert await cache.delete_prefix("customer:") == 0
    assert cache.stats().by_family["customer"].deletes == 10_500


async def test_delete_prefix_checks_its_argument(kv: KVStore) -> None:
    cache = Cache(kv)
    with pytest.raises(TypeError):
        await cache.delete_prefix(None)  # type: ignore[arg-type]
    with pytest.raises(KVValidationError, match="exceeds key length limit"):
        await cache.delete_prefix("p" * 600)


async def test_constructor_checks_options(kv: KVStore) -> None:
    with pytest.raises(TypeError, match="KVStore"):
        Cache("memory://")  # type: ignore[arg-type]
    with pytest.raises(KVValidationError, match="jitter"):
        Cache(kv, jitter=1.0)
    with pytest.raises(KVValidationError, match="local_ttl"):
        Cache(kv, local_ttl=0)
    with pytest.raises(TypeError, match="serializer"):
        Cache(kv, serializer=object())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="prefix"):
        Cache(kv, prefix=1)  # type: ignore[arg-type]


class BytesJSON:
    """A binary serializer: JSON as UTF-8 bytes."""

    binary = True

    def dumps(self, value: Any) -> bytes:
        return JSON.dumps(value).encode()

    def loads(self, data: bytes) -> Any:
        return json.loads(data)


async def test_binary_serializer(relaxed: KVStore, clock: FakeClock) -> None:
    cache = Cache(relaxed, serializer=BytesJSON())
    await cache.set("k", {"é": [1, 2]})
    assert await relaxed.get("k", type="bytes") == '|{"é":[1,2]}'.encode()
    assert await cache.get("k") == {"é": [1, 2]}
    calls = 0

    async def fetch() -> str:
        nonlocal calls
        calls += 1
        return f"v{calls}"

    assert await cache.get_or_set("s", fetch, ttl=10, stale_ttl=100) == "v1"
    clock.advance(20)
    assert await cache.get_or_set("s", fetch, ttl=10, stale_ttl=100) == "v1"  # stale
    await cache.close()


# -- the local tier ------------------------------------------------------------------


async def test_local_tier_serves_without_the_store_until_local_ttl(
    kv: KVStore, clock: FakeClock
) -> None:
    cache = Cache(kv, local_ttl=30)
    await cache.set("k", "v1")
    await kv.put("k", '|"changed by another process"')
    assert await cache.get("k") == "v1"
    clock.advance(30)
    assert await cache.get("k") == "changed by another process"


async def test_local_tier_never_outlives_the_entry(relaxed: KVStore, clock: FakeClock) -> None:
    cache = Cache(relaxed, local_ttl=300)
    await cache.set("k", 1, ttl=10)
    clock.advance(10)
    assert await cache.get("k") is None


async def test_own_writes_invalidate_the_local_tier(kv: KVStore) -> None:
    cache = Cache(kv, local_ttl=300)
    await cache.set("a:1", 1)
    await cache.set("a:2", 2)
    await cache.set("b:1", 3)
    assert [await cache.get(k) for k in ("a:1", "a:2", "b:1")] == [1, 2, 3]
    await cache.set("a:1", 10)
    assert await cache.get("a:1") == 10
    await cache.delete("a:1")
    assert await cache.get("a:1") is None
    assert await cache.delete_prefix("a:") == 1
    assert await cache.get("a:2") is None
    assert await cache.get("b:1") == 3


async def test_local_tier_is_bounded_and_least_recently_used_goes(kv: KVStore) -> None:
    cache = Cache(kv, local_ttl=300, local_maxsize=3)
    for key in "abcd":
        await cache.set(key, key)
    await kv.put("a", '|"store"')
    await kv.put("c", '|"store"')
    assert await cache.get("a") == "store"  # "a" was evicted, so the store answered
    assert await cache.get("c") == "c"  # "c" is still local


async def test_results_are_fresh_objects(kv: KVStore) -> None:
    cache = Cache(kv, local_ttl=300)
    await cache.set("k", {"items": [1]})
    first = await cache.get("k")
    first["items"].append(2)
    assert await cache.get("k") == {"items": [1]}
