"""Statistics: the counters every cache operation updates, families, hit rate, exports."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from backends import FakeClock
from kvcache import KVStore, Limits
from kvcache.cache import Cache
from kvcache.kv.memory import MemoryStore
from kvcache.stats import (
    OTHER_FAMILY,
    CacheStats,
    StatsRecorder,
    family_of,
    prometheus_collector,
    register_prometheus,
)


def test_family_drops_the_last_segment() -> None:
    assert family_of("customer:email:a@b.c") == "customer:email"
    assert family_of("shop:config") == "shop"
    assert family_of("plain") == ""


async def test_every_operation_is_counted_per_family(kv: KVStore) -> None:
    cache = Cache(kv, prefix="app:")
    await cache.set("customer:email:a@b.c", {"id": 1})
    await cache.get("customer:email:a@b.c")
    await cache.get("customer:email:a@b.c")
    await cache.get("customer:email:nobody@b.c")
    await cache.delete("customer:email:a@b.c")
    await cache.set("shop:config", {})
    await cache.get_or_set("shop:plan", lambda: "plus")  # type: ignore[arg-type, return-value]

    stats = cache.stats()
    assert isinstance(stats, CacheStats)
    email = stats.by_family["customer:email"]
    assert (email.hits, email.misses, email.sets, email.deletes) == (2, 1, 1, 1)
    assert email.hit_rate == pytest.approx(2 / 3)
    shop = stats.by_family["shop"]
    assert (shop.sets, shop.misses, shop.fetches, shop.fetch_errors) == (2, 1, 1, 0)
    assert (stats.hits, stats.misses, stats.sets, stats.deletes) == (2, 2, 3, 1)
    assert stats.hit_rate == pytest.approx(0.5)
    assert set(stats.by_family) == {"customer:email", "shop"}


def test_hit_rate_before_any_lookup_is_zero() -> None:
    assert CacheStats().hit_rate == 0.0


async def test_stale_hits_count_towards_the_hit_rate() -> None:
    clock = FakeClock()
    cache = Cache(MemoryStore(limits=Limits.relaxed(), clock=clock))

    async def fetch() -> int:
        return 1

    await cache.get_or_set("k", fetch, ttl=10, stale_ttl=60)
    clock.advance(10)
    await cache.get_or_set("k", fetch, ttl=10, stale_ttl=60)
    await cache.close()
    stats = cache.stats()
    assert (stats.misses, stats.stale_hits, stats.hit_rate) == (1, 1, 0.5)


async def test_as_dict_is_json(kv: KVStore) -> None:
    cache = Cache(kv)
    await cache.set("a:b", 1)
    await cache.get("a:b")
    data = json.loads(json.dumps(cache.stats().as_dict()))
    assert data["hits"] == 1
    assert data["hit_rate"] == 1.0
    assert data["by_family"]["a"]["sets"] == 1
    assert set(data) >= {
        "hits",
        "misses",
        "stale_hits",
        "sets",
        "deletes",
        "errors",
        "fetches",
        "fetch_errors",
        "fetch_seconds",
        "hit_rate",
        "by_family",
    }


def test_families_are_capped() -> None:
    recorder = StatsRecorder(max_families=3, max_keys=2)
    for index in range(10):
        recorder.family(f"user:{index}:profile").hits += 1
    snapshot = recorder.snapshot()
    assert len(snapshot.by_family) == 4
    assert snapshot.by_family[OTHER_FAMILY].hits == 7
    assert snapshot.hits == 10
    recorder.reset()
    assert recorder.snapshot().by_family == {}


async def test_prometheus_collector(kv: KVStore) -> None:
    cache = Cache(kv)
    await cache.set("customer:email:a@b.c", 1)
    await cache.get("customer:email:a@b.c")
    await cache.get("customer:email:a@b.c")
    registry = CollectorRegistry()
    register_prometheus(cache, registry)
    text = generate_latest(registry).decode()
    assert 'kvcache_cache_hits_total{cache="",family="customer:email"} 2.0' in text
    assert 'kvcache_cache_sets_total{cache="",family="customer:email"} 1.0' in text
    assert "# TYPE kvcache_cache_fetch_seconds_total counter" in text
    await cache.get("customer:email:x")
    text = generate_latest(registry).decode()
    assert 'kvcache_cache_misses_total{cache="",family="customer:email"} 1.0' in text


async def test_one_collector_for_several_caches(kv: KVStore) -> None:
    caches = {"customers": Cache(kv, prefix="c:"), "shops": Cache(kv, prefix="s:")}
    await caches["customers"].set("x:1", 1)
    await caches["shops"].set("y:1", 1)
    registry = CollectorRegistry()
    registry.register(prometheus_collector(caches))
    text = generate_latest(registry).decode()
    assert 'kvcache_cache_sets_total{cache="customers",family="x"} 1.0' in text
    assert 'kvcache_cache_sets_total{cache="shops",family="y"} 1.0' in text
    with pytest.raises(ValueError, match="Duplicated"):
        register_prometheus(caches["customers"], registry)
    assert caches["customers"].prometheus_collector() is not None


def test_prometheus_client_is_not_imported_with_the_cache() -> None:
    code = (
        "import sys, kvcache, kvcache.cache, kvcache.stats; "
        "assert 'prometheus_client' not in sys.modules, 'imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
