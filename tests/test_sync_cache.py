"""The cache contract through `kvcache.sync.Cache`, on every backend, from many threads.

The same promises as tests/test_cache*.py (falsy hits, single-flight, failures
reaching every waiter, fail open, TTL policy and its warning, stale serving,
leases, @cached), with threads instead of tasks, plus what only the facade has:
where a fetch runs, and errors arriving with their own types.
"""

from __future__ import annotations

import math
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

import kvcache
import kvcache.sync
from backends import FakeClock, SyncStoreFactory, fresh_namespace
from kvcache import CacheTTLWarning, KVValidationError, Limits
from kvcache.sync import Cache
from redis_server import RedisServer

LOOP_THREAD = "kvcache-sync"


class Origin:
    """A plain fetch that counts its calls and notes the thread each ran on."""

    def __init__(self, *results: Any, delay: float = 0.0) -> None:
        self.results = list(results) or [{"n": 1}]
        self.delay = delay
        self.threads: list[str] = []
        self.gate: threading.Event | None = None
        self._lock = threading.Lock()

    @property
    def calls(self) -> int:
        return len(self.threads)

    def __call__(self) -> Any:
        with self._lock:
            self.threads.append(threading.current_thread().name)
            result = self.results[min(self.calls, len(self.results)) - 1]
        if self.gate is not None:
            assert self.gate.wait(10)
        time.sleep(self.delay)
        if isinstance(result, BaseException):
            raise result
        return result


def in_threads(count: int, fn: Any) -> list[Any]:
    """Run `fn()` on `count` threads that start together; results or raised errors."""
    barrier = threading.Barrier(count)

    def one(_: int) -> Any:
        barrier.wait()
        try:
            return fn()
        except Exception as exc:
            return exc

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(one, range(count)))


@pytest.fixture
def relaxed(make_sync_store: SyncStoreFactory) -> kvcache.sync.KVStore:
    return make_sync_store(limits=Limits.relaxed())


# -- hits, misses and the stored form -----------------------------------------------------


@pytest.mark.parametrize("value", [None, 0, 0.0, "", False, [], {}])
def test_falsy_values_are_hits(skv: kvcache.sync.KVStore, value: Any) -> None:
    cache = Cache(skv)
    cache.set("k", value)
    assert cache.get("k", default="missing") == value
    assert type(cache.get("k")) is type(value)
    origin = Origin("refetched")
    assert cache.get_or_set("k", origin) == value
    assert origin.calls == 0
    stats = cache.stats()
    assert (stats.hits, stats.misses) == (3, 0)


def test_miss_default_and_the_async_envelope(skv: kvcache.sync.KVStore) -> None:
    cache = Cache(skv, prefix="app:")
    assert cache.get("absent", default=42) == 42
    cache.set("user:1", {"name": "Ada"})
    assert skv.get("app:user:1") == '|{"name":"Ada"}'  # what the async cache writes
    cache.delete("user:1")
    assert cache.get("user:1") is None
    assert cache.stats().misses == 2


def test_errors_keep_their_types(skv: kvcache.sync.KVStore) -> None:
    cache = Cache(skv)
    with pytest.raises(TypeError, match="JSON-serialisable"):
        cache.set("k", object())
    with pytest.raises(TypeError, match="JSON-serialisable"):
        cache.set("k", math.nan)
    with pytest.raises(KVValidationError, match="empty"):
        cache.get("")
    with pytest.raises(TypeError, match="key must be str"):
        cache.get_or_set(7, Origin())  # type: ignore[call-overload]
    with pytest.raises(TypeError, match="fetch must be"):
        cache.get_or_set("k", "not callable")  # type: ignore[call-overload]
    with pytest.raises(TypeError, match="ttl must be a number"):
        cache.set("k", 1, ttl="60")  # type: ignore[arg-type]
    with pytest.raises(KVValidationError, match="local_maxsize"):
        Cache(skv, local_maxsize=0)
    with pytest.raises(TypeError, match="kvcache.sync.open_kv"):
        Cache(object())  # type: ignore[arg-type]
    assert skv.get("k") is None


def test_an_async_store_is_refused_with_a_pointer(skv: kvcache.sync.KVStore) -> None:
    async_store = skv._store
    with pytest.raises(TypeError, match=r"kvcache\.Cache"):
        Cache(async_store)  # type: ignore[arg-type]


# -- get_or_set across threads -----------------------------------------------------------


def test_50_threads_missing_one_key_fetch_once_on_a_callers_thread(
    skv: kvcache.sync.KVStore,
) -> None:
    cache = Cache(skv)
    origin = Origin({"items": [1, 2]}, delay=0.05)
    results = in_threads(50, lambda: cache.get_or_set("hot", origin))
    assert origin.calls == 1
    assert all(result == {"items": [1, 2]} for result in results)
    results[0]["items"].append(3)  # every caller got its own object
    assert results[1] == {"items": [1, 2]}
    assert origin.threads[0].startswith("ThreadPoolExecutor")  # the caller's, not the loop's
    stats = cache.stats()
    assert (stats.fetches, stats.sets, stats.hits + stats.misses) == (1, 1, 50)


def test_a_failed_fetch_reaches_every_waiter_with_its_type(skv: kvcache.sync.KVStore) -> None:
    cache = Cache(skv)
    error = LookupError("origin down")
    origin = Origin(error, "recovered")
    first = origin.__call__

    def failing_once_all_have_joined() -> Any:
        # Fail only once all 20 misses are counted: each caller joins the fill in the
        # same loop step as its miss, so none of them can arrive after the failure
        # (a caller that did would rightly fetch again: a failure caches nothing).
        deadline = time.monotonic() + 10
        while cache.stats().misses < 20 and time.monotonic() < deadline:
            time.sleep(0.005)
        return first()

    results = in_threads(20, lambda: cache.get_or_set("k", failing_once_all_have_joined))
    assert origin.calls == 1
    assert all(result is error for result in results)
    assert cache.get("k", "nothing") == "nothing"
    assert cache.get_or_set("k", origin) == "recovered"
    assert cache.stats().fetch_errors == 1


def test_each_key_is_fetched_once_while_threads_mix_keys(skv: kvcache.sync.KVStore) -> None:
    cache = Cache(skv)
    origins = {f"k{i}": Origin(i, delay=0.01) for i in range(8)}
    counter = iter(range(10**6))
    lock = threading.Lock()

    def ask() -> Any:
        with lock:
            key = f"k{next(counter) % 8}"
        return key, cache.get_or_set(key, origins[key])

    results = in_threads(40, ask)
    assert all(value == int(key[1:]) for key, value in results)
    assert [origin.calls for origin in origins.values()] == [1] * 8


def test_a_fetch_may_use_the_sync_api_itself(skv: kvcache.sync.KVStore) -> None:
    cache = Cache(skv)
    skv.put("raw", "from the store")

    def fetch() -> Any:
        return {"raw": skv.get("raw"), "inner": cache.get_or_set("inner", lambda: 1)}

    assert cache.get_or_set("outer", fetch) == {"raw": "from the store", "inner": 1}


def test_an_async_fetch_is_awaited_on_the_stores_loop(skv: kvcache.sync.KVStore) -> None:
    cache = Cache(skv)
    seen: list[str] = []

    async def fetch() -> int:
        seen.append(threading.current_thread().name)
        return 5

    assert cache.get_or_set("k", fetch) == 5
    assert seen == [LOOP_THREAD]


def test_none_is_cached_only_with_negative_ttl(
    relaxed: kvcache.sync.KVStore, clock: FakeClock
) -> None:
    cache = Cache(relaxed)
    origin = Origin(None, None, "found")
    assert cache.get_or_set("k", origin) is None
    assert cache.get_or_set("k", origin, negative_ttl=5) is None
    assert cache.get_or_set("k", origin, negative_ttl=5) is None
    assert origin.calls == 2
    clock.advance(5)
    assert cache.get_or_set("k", origin) == "found"


def test_stale_is_served_while_a_worker_thread_refreshes(
    relaxed: kvcache.sync.KVStore, clock: FakeClock
) -> None:
    cache = Cache(relaxed)
    origin = Origin("v1", "v2")
    assert cache.get_or_set("k", origin, ttl=10, stale_ttl=100) == "v1"
    clock.advance(10)
    origin.gate = threading.Event()
    served = in_threads(10, lambda: cache.get_or_set("k", origin, ttl=10, stale_ttl=100))
    assert served == ["v1"] * 10  # answered while the refresh is held
    deadline = time.monotonic() + 5
    while origin.calls < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert origin.calls == 2  # one refresh for ten stale hits
    # The callers had gone: the refresh ran on a worker thread, not on the loop.
    assert origin.threads[1] not in (LOOP_THREAD, threading.current_thread().name)
    assert origin.threads[1].startswith("asyncio")
    origin.gate.set()
    while cache.get("k") != "v2" and time.monotonic() < deadline:
        time.sleep(0.01)
    assert cache.get("k") == "v2"
    assert cache.stats().stale_hits == 10


def test_close_cancels_background_refreshes_and_leaves_the_store_open(
    relaxed: kvcache.sync.KVStore, clock: FakeClock
) -> None:
    cache = Cache(relaxed)
    cache.get_or_set("k", lambda: "v1", ttl=10, stale_ttl=100)
    clock.advance(11)
    origin = Origin("v2")
    origin.gate = threading.Event()
    assert cache.get_or_set("k", origin, ttl=10, stale_ttl=100) == "v1"
    cache.close()
    origin.gate.set()
    assert cache.get("k", "stale") == "stale"  # the refresh never stored v2
    relaxed.put("still", "open")
    assert relaxed.get("still") == "open"


def test_lock_across_threads_fetches_once_and_releases_the_lease(
    skv: kvcache.sync.KVStore,
) -> None:
    cache = Cache(skv, prefix="app:")
    origin = Origin("value", delay=0.02)
    assert in_threads(10, lambda: cache.get_or_set("k", origin, lock=True)) == ["value"] * 10
    assert origin.calls == 1
    assert [info.name for info in skv.list().keys] == ["app:k"]


def test_a_waiter_takes_the_value_another_holder_stored(skv: kvcache.sync.KVStore) -> None:
    cache, other = Cache(skv, lock_timeout=5), Cache(skv)
    skv.put(".lease:k", f"other|{skv.clock() + 5}")  # another process holds the lease
    origin = Origin("mine")
    results: list[Any] = []
    waiter = threading.Thread(
        target=lambda: results.append(cache.get_or_set("k", origin, lock=True))
    )
    waiter.start()
    time.sleep(0.05)
    assert waiter.is_alive()
    other.set("k", "theirs")
    waiter.join(5)
    assert results == ["theirs"] and origin.calls == 0


# -- TTL policy and its warning --------------------------------------------------------


def test_short_ttls_warn_once_per_call_site_at_the_callers_line(
    skv: kvcache.sync.KVStore, clock: FakeClock
) -> None:
    with pytest.warns(CacheTTLWarning, match="default_ttl=10") as made:
        cache = Cache(skv, default_ttl=10)
    assert made[0].filename == __file__ and cache.default_ttl == 60
    with pytest.warns(CacheTTLWarning, match="ttl=30 is below .* 60") as seen:
        for index in range(3):
            cache.set(f"k{index}", index, ttl=30)
    assert len(seen) == 1 and seen[0].filename == __file__
    with pytest.warns(CacheTTLWarning) as fetched:
        cache.get_or_set("miss", lambda: 1, ttl=5)
    assert fetched[0].filename == __file__
    clock.advance(59)
    assert cache.get("k0") == 0
    clock.advance(1)
    assert cache.get("k0") is None


def test_cached_short_ttl_warns_where_decorated(skv: kvcache.sync.KVStore) -> None:
    cache = Cache(skv)
    with pytest.warns(CacheTTLWarning) as seen:
        cache.cached("k:{x}", ttl=30)
    assert seen[0].filename == __file__


# -- @cached ---------------------------------------------------------------------------------


def test_cached_plain_function_keys_by_argument_name(skv: kvcache.sync.KVStore) -> None:
    cache = Cache(skv)
    calls: list[tuple[str, str, str]] = []

    @cache.cached("customer:email:{email}:{shop}", ttl=1800)
    def find(email: str, shop: str = "main") -> dict[str, str]:
        calls.append((email, shop, threading.current_thread().name))
        return {"email": email, "shop": shop}

    assert find("a@b.c") == {"email": "a@b.c", "shop": "main"}
    assert find(email="a@b.c") == {"email": "a@b.c", "shop": "main"}
    assert find("a@b.c", shop="other") == {"email": "a@b.c", "shop": "other"}
    me = threading.current_thread().name
    assert calls == [("a@b.c", "main", me), ("a@b.c", "other", me)]
    assert find.key("a@b.c") == "customer:email:a@b.c:main"
    assert find.__name__ == "find" and find.template == "customer:email:{email}:{shop}"
    find.invalidate("a@b.c")
    find("a@b.c")
    assert len(calls) == 3
    results = in_threads(20, lambda: find("b@c.d"))
    assert results == [{"email": "b@c.d", "shop": "main"}] * 20
    assert len(calls) == 4  # single-flight through the decorator too


def test_cached_methods_attribute_fields_and_async_functions(skv: kvcache.sync.KVStore) -> None:
    cache = Cache(skv)

    class Repo:
        def __init__(self, shop: str) -> None:
            self.shop = shop
            self.calls = 0

        @cache.cached("shop:{self.shop}:config")
        def config(self) -> dict[str, str]:
            self.calls += 1
            return {"shop": self.shop}

    repo = Repo("s1")
    assert repo.config() == repo.config() == {"shop": "s1"}
    assert repo.calls == 1 and repo.config.key() == "shop:s1:config"
    repo.config.invalidate()
    assert cache.get("shop:s1:config", "miss") == "miss"  # a tombstone, read as a miss

    @cache.cached("async:{n}")
    async def double(n: int) -> int:
        return n * 2

    assert double(4) == 8 and skv.get("async:4") == "|8"


def test_cached_template_is_checked_when_decorating(skv: kvcache.sync.KVStore) -> None:
    cache = Cache(skv)

    def find(email: str) -> str:
        return email

    with pytest.raises(ValueError, match=r"names \['mail'\]"):
        cache.cached("customer:{mail}")(find)
    with pytest.raises(ValueError, match="positional"):
        cache.cached("customer:{}")
    with pytest.raises(TypeError, match="decorates a function"):
        cache.cached("k")(5)  # type: ignore[call-overload]


# -- the rest of the surface -------------------------------------------------------------


def test_delete_prefix_walks_every_page(skv: kvcache.sync.KVStore) -> None:
    cache = Cache(skv)
    skv.put_many([{"key": f"p:{i:04d}", "value": "|1"} for i in range(1500)])
    cache.set("other", 1)
    assert cache.delete_prefix("p:") == 1500
    assert {info.metadata for info in skv.list(prefix="p:").keys} == {"kvcache:tombstone"}
    assert cache.get("p:0000", "miss") == cache.get("p:1499", "miss") == "miss"
    assert cache.delete_prefix("p:") == 0  # tombstones are not entries
    assert cache.get("other") == 1


def test_local_tier_and_many_threads_keep_exact_counts(skv: kvcache.sync.KVStore) -> None:
    cache = Cache(skv, local_ttl=30)

    def work(worker: int) -> None:
        for i in range(50):
            cache.set(f"w{worker}:{i}", i)
            assert cache.get(f"w{worker}:{i}") == i

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(work, range(16)))
    stats = cache.stats()
    assert (stats.sets, stats.hits, stats.misses) == (800, 800, 0)


def test_attributes_mirror_the_async_cache(skv: kvcache.sync.KVStore) -> None:
    cache = Cache(skv, prefix="p:", jitter=0.25, lock_timeout=3)
    assert (cache.prefix, cache.jitter, cache.lock_timeout, cache.default_ttl) == (
        "p:",
        0.25,
        3.0,
        3600,
    )
    assert cache.kv is skv and "kvcache.sync.Cache" in repr(cache)


def test_prometheus_collector_reads_the_sync_cache(skv: kvcache.sync.KVStore) -> None:
    from prometheus_client import CollectorRegistry

    cache = Cache(skv)
    cache.set("customer:email:a", 1)
    cache.get("customer:email:a")
    registry = CollectorRegistry()
    registry.register(cache.prometheus_collector())
    labels = {"cache": "", "family": "customer:email"}
    assert registry.get_sample_value("kvcache_cache_hits_total", labels) == 1


# -- failing open, for real -----------------------------------------------------------


def test_a_dead_redis_is_a_miss_never_an_error_and_the_cache_recovers(tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "redis", durable=True).start()  # survives the kill
    try:
        with kvcache.sync.open_kv(server.url, namespace=fresh_namespace(), timeout=1) as kv:
            cache = Cache(kv, breaker=kvcache.CircuitBreaker(threshold=100))
            cache.set("k", "before")
            server.kill()
            assert cache.get("k", "default") == "default"
            cache.set("k", "during")  # dropped
            assert cache.get_or_set("k", lambda: "fetched") == "fetched"
            results = in_threads(10, lambda: cache.get_or_set("other", lambda: "x"))
            assert results == ["x"] * 10
            assert cache.stats().errors >= 4
            server.start()
            deadline = time.monotonic() + 10
            while cache.get("k", None) != "before" and time.monotonic() < deadline:
                time.sleep(0.05)
            assert cache.get("k") == "before"
    finally:
        server.stop()


def test_a_fetch_raising_stop_iteration_is_a_runtime_error_as_in_a_coroutine(
    skv: kvcache.sync.KVStore,
) -> None:
    cache = Cache(skv)

    def fetch() -> Any:
        raise StopIteration

    with pytest.raises(RuntimeError, match="StopIteration") as info:
        cache.get_or_set("k", fetch)
    assert isinstance(info.value.__cause__, StopIteration)
    assert cache.get_or_set("k", lambda: "after") == "after"
