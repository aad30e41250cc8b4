"""get_or_set and @cached: single-flight, failures, negative caching, stale serving, leases."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from backends import FakeClock, StoreFactory
from kvcache import KVStore, Limits
from kvcache.cache import Cache, CacheTTLWarning
from kvcache.kv.memory import MemoryStore


class Origin:
    """A fetch that counts its calls; it sleeps so that concurrent callers really overlap."""

    def __init__(self, *results: Any, delay: float = 0.02) -> None:
        self.results = list(results) or [{"n": 1}]
        self.delay = delay
        self.calls = 0
        self.release: asyncio.Event | None = None

    async def __call__(self) -> Any:
        self.calls += 1
        if self.release is not None:
            await self.release.wait()
        await asyncio.sleep(self.delay)
        result = self.results[min(self.calls, len(self.results)) - 1]
        if isinstance(result, BaseException):
            raise result
        return result


@pytest.fixture
async def relaxed(make_store: StoreFactory) -> KVStore:
    return await make_store(limits=Limits.relaxed())


async def test_stampede_of_100_callers_fetches_once(kv: KVStore) -> None:
    cache = Cache(kv)
    origin = Origin({"items": [1, 2]})
    results = await asyncio.gather(*(cache.get_or_set("hot", origin) for _ in range(100)))
    assert origin.calls == 1
    assert all(result == {"items": [1, 2]} for result in results)
    results[0]["items"].append(3)  # every caller got its own object
    assert results[1] == {"items": [1, 2]}
    assert await cache.get_or_set("hot", origin) == {"items": [1, 2]}
    assert origin.calls == 1
    stats = cache.stats()
    assert (stats.fetches, stats.sets, stats.hits + stats.misses) == (1, 1, 101)


class LaggingReads(MemoryStore):
    """A store whose first read answers what it found only once `gate` opens: a
    caller whose miss was read before another caller's fetch stored the value."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()
        self.reads = 0

    async def _get_value(self, key: str) -> bytes | None:
        self.reads += 1
        found = await super()._get_value(key)
        if self.reads == 1:
            await self.gate.wait()
        return found


async def test_a_miss_read_before_the_fetch_ended_does_not_fetch_again() -> None:
    kv = LaggingReads()
    cache = Cache(kv)
    origin = Origin({"n": 1})
    slow = asyncio.ensure_future(cache.get_or_set("hot", origin))
    await asyncio.sleep(0)  # the slow caller has read its (stale) miss and waits
    assert await cache.get_or_set("hot", origin) == {"n": 1}  # fetched, stored, ended
    kv.gate.set()
    assert await slow == {"n": 1}
    assert origin.calls == 1
    await kv.close()


async def test_failed_fetch_reaches_every_waiter_and_caches_nothing(kv: KVStore) -> None:
    cache = Cache(kv)
    origin = Origin(RuntimeError("origin down"), "recovered")
    # The fetch fails only once all 20 callers have read their miss: one that reads it
    # after the failure ended would rightly fetch again (a busy machine does that).
    origin.release = asyncio.Event()

    async def release_when_all_missed() -> None:
        while cache.stats().misses < 20:
            await asyncio.sleep(0.001)
        assert origin.release is not None
        origin.release.set()

    watcher = asyncio.ensure_future(release_when_all_missed())
    results = await asyncio.gather(
        *(cache.get_or_set("k", origin) for _ in range(20)), return_exceptions=True
    )
    await watcher
    assert origin.calls == 1
    assert all(isinstance(r, RuntimeError) and str(r) == "origin down" for r in results)
    assert await kv.get("k") is None
    assert await cache.get_or_set("k", origin) == "recovered"
    assert origin.calls == 2
    stats = cache.stats()
    assert (stats.fetches, stats.fetch_errors) == (2, 1)
    assert stats.fetch_seconds > 0


@pytest.mark.parametrize("value", [0, "", False, [], {}])
async def test_falsy_fetch_results_are_cached(kv: KVStore, value: Any) -> None:
    cache = Cache(kv)
    origin = Origin(value)
    assert await cache.get_or_set("k", origin) == value
    assert await cache.get_or_set("k", origin) == value
    assert origin.calls == 1


async def test_none_is_cached_only_with_negative_ttl(relaxed: KVStore, clock: FakeClock) -> None:
    cache = Cache(relaxed)
    origin = Origin(None, delay=0)
    assert await cache.get_or_set("plain", origin) is None
    assert await cache.get_or_set("plain", origin) is None
    assert origin.calls == 2

    negative = Origin(None, {"found": True}, delay=0)
    assert await cache.get_or_set("neg", negative, negative_ttl=5) is None
    assert await cache.get_or_set("neg", negative, negative_ttl=5) is None
    assert negative.calls == 1
    clock.advance(5)
    assert await cache.get_or_set("neg", negative, negative_ttl=5) == {"found": True}
    assert negative.calls == 2


async def test_a_cached_none_is_a_hit(kv: KVStore) -> None:
    cache = Cache(kv)
    await cache.set("k", None)
    origin = Origin("fetched")
    assert await cache.get_or_set("k", origin) is None
    assert origin.calls == 0


async def test_stale_value_is_served_while_one_refresh_runs(
    relaxed: KVStore, clock: FakeClock
) -> None:
    cache = Cache(relaxed)
    origin = Origin("v1", "v2", delay=0)
    assert await cache.get_or_set("k", origin, ttl=10, stale_ttl=100) == "v1"
    clock.advance(10)
    assert await cache.get("k", "expired") == "expired"  # get never serves stale
    origin.release = asyncio.Event()
    served = await asyncio.gather(
        *(cache.get_or_set("k", origin, ttl=10, stale_ttl=100) for _ in range(10))
    )
    assert served == ["v1"] * 10  # answered before the refresh could finish
    await asyncio.sleep(0)
    assert origin.calls == 2  # one background refresh for ten stale hits
    origin.release.set()
    for _ in range(50):
        if await cache.get("k") == "v2":
            break
        await asyncio.sleep(0.01)
    assert await cache.get("k") == "v2"
    assert cache.stats().stale_hits == 10


async def test_stale_window_ends(relaxed: KVStore, clock: FakeClock) -> None:
    cache = Cache(relaxed)
    origin = Origin("v1", "v2", delay=0)
    await cache.get_or_set("k", origin, ttl=10, stale_ttl=20)
    clock.advance(30)
    assert await cache.get_or_set("k", origin, ttl=10, stale_ttl=20) == "v2"
    assert cache.stats().stale_hits == 0


async def test_failed_background_refresh_keeps_the_stale_value(
    relaxed: KVStore, clock: FakeClock
) -> None:
    cache = Cache(relaxed)
    origin = Origin("v1", RuntimeError("origin down"), "v3", delay=0)
    await cache.get_or_set("k", origin, ttl=10, stale_ttl=100)
    clock.advance(15)
    assert await cache.get_or_set("k", origin, ttl=10, stale_ttl=100) == "v1"
    await asyncio.sleep(0.01)
    assert cache.stats().fetch_errors == 1
    assert await cache.get_or_set("k", origin, ttl=10, stale_ttl=100) == "v1"
    await cache.close()


async def test_a_cancelled_caller_does_not_cancel_the_shared_fetch(kv: KVStore) -> None:
    cache = Cache(kv)
    origin = Origin("value", delay=0.05)
    first = asyncio.ensure_future(cache.get_or_set("k", origin))
    second = asyncio.ensure_future(cache.get_or_set("k", origin))
    await asyncio.sleep(0.01)
    first.cancel()
    assert await second == "value"
    assert first.cancelled()
    assert origin.calls == 1


async def test_plain_function_as_fetch(kv: KVStore) -> None:
    cache = Cache(kv)
    assert await cache.get_or_set("k", lambda: 7) == 7  # type: ignore[arg-type, return-value]
    with pytest.raises(TypeError, match="fetch must be"):
        await cache.get_or_set("other", "not callable")  # type: ignore[arg-type]


async def test_close_cancels_background_refreshes(relaxed: KVStore, clock: FakeClock) -> None:
    cache = Cache(relaxed)
    origin = Origin("v1", "v2", delay=0)
    await cache.get_or_set("k", origin, ttl=10, stale_ttl=100)
    clock.advance(11)
    origin.release = asyncio.Event()
    await cache.get_or_set("k", origin, ttl=10, stale_ttl=100)
    await asyncio.sleep(0)
    await cache.close()
    assert await cache.get("k", "stale") == "stale"  # the refresh never stored v2


# -- lock=True in one process: the lease protocol ------------------------------------


async def test_lock_takes_and_releases_a_lease(kv: KVStore) -> None:
    cache = Cache(kv, prefix="app:")
    origin = Origin("value")
    results = await asyncio.gather(*(cache.get_or_set("k", origin, lock=True) for _ in range(10)))
    assert results == ["value"] * 10
    assert origin.calls == 1
    assert [info.name for info in (await kv.list()).keys] == ["app:k"]


async def test_waiter_takes_the_value_another_holder_stored(kv: KVStore) -> None:
    cache = Cache(kv, lock_timeout=5)
    other = Cache(kv)
    await kv.put(".lease:k", f"other|{kv.clock() + 5}")  # another process holds the lease
    origin = Origin("mine")
    waiting = asyncio.ensure_future(cache.get_or_set("k", origin, lock=True))
    await asyncio.sleep(0.05)
    assert not waiting.done()
    await other.set("k", "theirs")
    assert await waiting == "theirs"
    assert origin.calls == 0


async def test_waiter_gives_up_after_the_lock_timeout(kv: KVStore) -> None:
    cache = Cache(kv, lock_timeout=0.2)
    await kv.put(".lease:k", f"other|{kv.clock() + 1000}")  # a holder that never finishes
    origin = Origin("mine", delay=0)
    assert await cache.get_or_set("k", origin, lock=True) == "mine"
    assert origin.calls == 1


async def test_lease_past_its_deadline_is_taken_over(kv: KVStore, clock: FakeClock) -> None:
    cache = Cache(kv, lock_timeout=5)
    await kv.put(".lease:k", f"dead|{clock() - 1}")
    origin = Origin("mine", delay=0)
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert await cache.get_or_set("k", origin, lock=True) == "mine"
    assert loop.time() - started < 4  # no waiting out the dead holder's lock_timeout
    assert await kv.get(".lease:k") is None


async def test_long_keys_get_a_hashed_lease(kv: KVStore) -> None:
    cache = Cache(kv)
    key = "k" * 510
    assert await cache.get_or_set(key, Origin("v"), lock=True) == "v"


# -- @cached -----------------------------------------------------------------------------


async def test_cached_decorator_keys_by_argument_name(kv: KVStore) -> None:
    cache = Cache(kv)
    calls: list[tuple[str, str]] = []

    @cache.cached("customer:email:{email}:{shop}", ttl=1800)
    async def find(email: str, shop: str = "main") -> dict[str, str]:
        calls.append((email, shop))
        return {"email": email, "shop": shop}

    assert await find("a@b.c") == {"email": "a@b.c", "shop": "main"}
    assert await find(email="a@b.c") == {"email": "a@b.c", "shop": "main"}
    assert await find("a@b.c", shop="other") == {"email": "a@b.c", "shop": "other"}
    assert calls == [("a@b.c", "main"), ("a@b.c", "other")]
    assert find.key("a@b.c") == "customer:email:a@b.c:main"
    assert find.__name__ == "find"
    await find.invalidate("a@b.c")
    await find("a@b.c")
    assert len(calls) == 3
    assert cache.stats().by_family["customer:email:a@b.c"].fetches == 3


async def test_cached_methods_and_attribute_fields(kv: KVStore) -> None:
    cache = Cache(kv)

    class Repo:
        def __init__(self, shop: str) -> None:
            self.shop = shop
            self.calls = 0

        @cache.cached("shop:{self.shop}:config")
        async def config(self) -> dict[str, str]:
            self.calls += 1
            return {"shop": self.shop}

    repo = Repo("s1")
    assert await repo.config() == {"shop": "s1"}
    assert await repo.config() == {"shop": "s1"}
    assert repo.calls == 1
    assert repo.config.key() == "shop:s1:config"
    await repo.config.invalidate()
    assert await cache.get("shop:s1:config", "miss") == "miss"
    assert await repo.config() == {"shop": "s1"}
    assert repo.calls == 2


def test_cached_template_is_checked_when_decorating(kv: KVStore) -> None:
    cache = Cache(kv)

    async def find(email: str) -> str:
        return email

    with pytest.raises(ValueError, match=r"names \['mail'\]"):
        cache.cached("customer:{mail}")(find)
    with pytest.raises(ValueError, match="positional"):
        cache.cached("customer:{}")
    with pytest.raises(TypeError, match="template must be str"):
        cache.cached(1)  # type: ignore[arg-type]


def test_cached_short_ttl_warns_where_decorated(kv: KVStore) -> None:
    cache = Cache(kv)
    with pytest.warns(CacheTTLWarning) as seen:
        cache.cached("k:{x}", ttl=30)
    assert seen[0].filename == __file__
