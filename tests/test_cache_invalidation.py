"""Invalidation-safe fills in one process: a fill whose fetch began before an invalidation
of its key does not store what it fetched (its callers still get it).

Each test holds a fetch open (an asyncio.Event), invalidates while it runs, releases it,
then reads. `who` is the invalidating side: "same" is the filling cache itself (its
running fills are voided in process); "other" is a second `Cache` on the same store,
which knows nothing of this one's fills, exactly like another process: only the store
(tombstones, fenced writes, purge marks) can stop the fill.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from backends import FakeClock, StoreFactory
from kvcache import KVBackendError, KVStore, Limits
from kvcache.cache import Cache, CircuitBreaker
from kvcache.kv.memory import MemoryStore
from kvcache.kv.types import Record

KEY = "customer:email:a@b.c"
BEFORE = {"email": "a@b.c", "name": "before the webhook"}
MISS = "<miss>"

Invalidate = Callable[[Cache], Awaitable[object]]

INVALIDATIONS: dict[str, Invalidate] = {
    "delete": lambda cache: cache.delete(KEY),
    "delete_prefix": lambda cache: cache.delete_prefix("customer:"),
    "delete_prefix_inner": lambda cache: cache.delete_prefix("customer:email:a"),
    "delete_prefix_not_a_segment": lambda cache: cache.delete_prefix("cust"),
    "delete_prefix_everything": lambda cache: cache.delete_prefix(""),
}


class SlowFetch:
    """A fetch the test holds open: `started` is set when it begins, it returns on `release`."""

    def __init__(self, value: Any = BEFORE) -> None:
        self.value = value
        self.started = asyncio.Event()
        self.release = asyncio.Event()
        self.calls = 0

    async def __call__(self) -> Any:
        self.calls += 1
        self.started.set()
        await self.release.wait()
        return self.value


def done(value: Any) -> SlowFetch:
    """A fetch that returns at once."""
    fetch = SlowFetch(value)
    fetch.release.set()
    return fetch


async def fill_across(
    cache: Cache, invalidate: Callable[[], Awaitable[object]] | None, **options: Any
) -> Any:
    """get_or_set(KEY) with a fetch held open while `invalidate` runs; the caller's result."""
    fetch = SlowFetch()
    filling = asyncio.ensure_future(cache.get_or_set(KEY, fetch, **options))
    await fetch.started.wait()
    if invalidate is not None:
        await invalidate()
    fetch.release.set()
    return await filling


@pytest.fixture
async def relaxed(make_store: StoreFactory) -> KVStore:
    return await make_store(limits=Limits.relaxed())


def invalidator(who: str, cache: Cache, kv: KVStore) -> Cache:
    return cache if who == "same" else Cache(kv)


@pytest.mark.parametrize("who", ["same", "other"])
@pytest.mark.parametrize("how", sorted(INVALIDATIONS))
@pytest.mark.parametrize("before", ["absent", "tombstone"])
async def test_an_invalidation_during_a_fetch_keeps_its_value_out(
    kv: KVStore, who: str, how: str, before: str
) -> None:
    cache = Cache(kv)
    if before == "tombstone":
        await cache.delete(KEY)  # the fill reads a tombstone and must replace exactly it
    other = invalidator(who, cache, kv)
    result = await fill_across(cache, lambda: INVALIDATIONS[how](other))
    assert result == BEFORE  # the caller still gets what it fetched
    assert await cache.get(KEY, MISS) == MISS
    assert await Cache(kv).get(KEY, MISS) == MISS
    stats = cache.stats()
    assert (stats.fetches, stats.sets) == (1, 0)


@pytest.mark.parametrize("before", ["absent", "tombstone"])
async def test_the_control_without_an_invalidation_stores(kv: KVStore, before: str) -> None:
    """What the tests above would see if fills were not fenced: the value is stored."""
    cache = Cache(kv)
    if before == "tombstone":
        await cache.delete(KEY)
    assert await fill_across(cache, None) == BEFORE
    assert await Cache(kv).get(KEY, MISS) == BEFORE
    assert cache.stats().sets == 1


async def test_an_invalidation_of_another_key_does_not_stop_a_fill(kv: KVStore) -> None:
    cache = Cache(kv)
    other = Cache(kv)

    async def elsewhere() -> None:
        await cache.delete("customer:email:x@y.z")
        await other.delete("customer:email:x@y.z")
        await cache.delete_prefix("shop:")
        await other.delete_prefix("customer:phone:")  # a sibling scope

    assert await fill_across(cache, elsewhere) == BEFORE
    assert await Cache(kv).get(KEY, MISS) == BEFORE


async def test_a_fill_begun_after_another_writers_purge_is_kept(
    kv: KVStore, clock: FakeClock
) -> None:
    cache = Cache(kv)
    await Cache(kv).delete_prefix("customer:")
    clock.advance(2)  # past the clock-skew allowance of purge marks (1 s)
    assert await cache.get_or_set(KEY, done("after")) == "after"
    assert await Cache(kv).get(KEY, MISS) == "after"


async def test_callers_after_an_invalidation_do_not_join_the_voided_fetch(kv: KVStore) -> None:
    cache = Cache(kv)
    first = SlowFetch("before")
    filling = asyncio.ensure_future(cache.get_or_set(KEY, first))
    await first.started.wait()
    await cache.delete(KEY)
    second = SlowFetch("after")
    second.release.set()
    assert await cache.get_or_set(KEY, second) == "after"  # a fetch of its own
    first.release.set()
    assert await filling == "before"
    assert await cache.get(KEY) == "after"  # the voided fill did not overwrite it


@pytest.mark.parametrize("who", ["same", "other"])
async def test_set_during_a_fetch_wins(kv: KVStore, who: str) -> None:
    cache = Cache(kv)
    other = invalidator(who, cache, kv)
    assert await fill_across(cache, lambda: other.set(KEY, "explicit")) == BEFORE
    assert await Cache(kv).get(KEY) == "explicit"


async def test_set_wins_over_a_tombstone_and_a_refill_replaces_it(kv: KVStore) -> None:
    cache = Cache(kv)
    await cache.set(KEY, 1)
    await cache.delete(KEY)
    assert await cache.get(KEY, MISS) == MISS
    await cache.set(KEY, 2)
    assert await cache.get(KEY) == 2
    await cache.delete(KEY)
    assert await cache.get_or_set(KEY, done(3)) == 3
    assert await Cache(kv).get(KEY) == 3
    stats = cache.stats()
    assert (stats.errors, stats.deletes) == (0, 2)  # a tombstone is a miss, not an error


async def test_a_foreign_entry_is_still_replaced_by_a_fill(kv: KVStore) -> None:
    cache = Cache(kv)
    await kv.put(KEY, '{"written": "by something else"}')
    assert await cache.get_or_set(KEY, done("mine")) == "mine"
    assert await cache.get(KEY) == "mine"


async def test_a_foreign_value_at_a_mark_key_does_not_stop_fills(kv: KVStore) -> None:
    cache = Cache(kv, prefix="app:")
    await kv.put("app:.purge:", "not a mark")  # written by something else, no expiry
    await kv.put("app:.purge:customer:", "w|not a time")
    assert await cache.get_or_set(KEY, done("kept")) == "kept"
    assert await cache.get(KEY) == "kept"


async def test_purges_count_live_entries_only(kv: KVStore) -> None:
    cache = Cache(kv, prefix="app:")
    await cache.set("customer:1", 1)
    await cache.set("customer:2", 2)
    await cache.delete("customer:3")  # a tombstone, not an entry
    assert await cache.delete_prefix("customer:") == 2
    assert await cache.delete_prefix("customer:") == 0
    assert await cache.delete_prefix("") == 0  # marks and tombstones are not entries
    assert cache.stats().deletes == 3


async def test_a_fill_slower_than_the_fill_timeout_stores_nothing(
    kv: KVStore, clock: FakeClock
) -> None:
    """Tombstones live 60 s on Workers KV's limits; a fill that outlived one might not
    see the invalidation it stood for, so a fill over 50 s is returned, not stored."""
    cache = Cache(kv)

    def slow(seconds: float) -> Callable[[], Awaitable[None]]:
        async def wait() -> None:
            clock.advance(seconds)

        return wait

    assert await fill_across(cache, slow(51)) == BEFORE
    assert await cache.get(KEY, MISS) == MISS
    assert await fill_across(cache, slow(49)) == BEFORE
    assert await cache.get(KEY, MISS) == BEFORE


@pytest.mark.parametrize("who", ["same", "other"])
async def test_deep_keys_are_covered_by_deep_purges(kv: KVStore, who: str) -> None:
    cache = Cache(kv)
    deep = "a:b:c:d:e:f:g:h:i:j:k:l"
    other = invalidator(who, cache, kv)
    fetch = SlowFetch()
    filling = asyncio.ensure_future(cache.get_or_set(deep, fetch))
    await fetch.started.wait()
    await other.delete_prefix("a:b:c:d:e:f:g:h:i:j:")
    fetch.release.set()
    assert await filling == BEFORE
    assert await cache.get(deep, MISS) == MISS


# -- the local tier, stale refreshes and lock=True obey the same rule -----------------


@pytest.mark.parametrize("who", ["same", "other"])
@pytest.mark.parametrize("how", ["delete", "delete_prefix"])
async def test_the_local_tier_keeps_no_invalidated_fill(
    kv: KVStore, clock: FakeClock, who: str, how: str
) -> None:
    cache = Cache(kv, local_ttl=300)
    other = invalidator(who, cache, kv)
    assert await fill_across(cache, lambda: INVALIDATIONS[how](other)) == BEFORE
    assert await cache.get(KEY, MISS) == MISS  # neither the local tier nor the store has it
    clock.advance(2)  # another writer's purge mark no longer covers new fills
    refill = done("after")
    assert await cache.get_or_set(KEY, refill) == "after"
    await kv.put(KEY, '|"changed in the store"')
    assert await cache.get(KEY) == "after"  # the refill is kept locally as before


@pytest.mark.parametrize("who", ["same", "other"])
@pytest.mark.parametrize("how", ["delete", "delete_prefix"])
async def test_a_stale_refresh_during_an_invalidation_stores_nothing(
    relaxed: KVStore, clock: FakeClock, who: str, how: str
) -> None:
    cache = Cache(relaxed)
    options: dict[str, Any] = {"ttl": 10, "stale_ttl": 100}
    assert await cache.get_or_set(KEY, done("v1"), **options) == "v1"
    clock.advance(11)  # stale: served at once while one refresh runs in the background
    refresh = SlowFetch("v2")
    running = asyncio.all_tasks()
    assert await cache.get_or_set(KEY, refresh, **options) == "v1"
    (background,) = asyncio.all_tasks() - running
    await refresh.started.wait()
    await INVALIDATIONS[how](invalidator(who, cache, relaxed))
    refresh.release.set()
    await background
    assert await cache.get(KEY, MISS) == MISS
    assert await cache.get_or_set(KEY, done("v3"), **options) == "v3"  # no stale v1


@pytest.mark.parametrize("who", ["same", "other"])
@pytest.mark.parametrize("how", ["delete", "delete_prefix"])
async def test_a_lease_holders_fill_during_an_invalidation_stores_nothing(
    kv: KVStore, who: str, how: str
) -> None:
    cache = Cache(kv, prefix="app:")
    other = Cache(kv, prefix="app:") if who == "other" else cache
    result = await fill_across(cache, lambda: INVALIDATIONS[how](other), lock=True)
    assert result == BEFORE
    assert await cache.get(KEY, MISS) == MISS
    assert await kv.get("app:.lease:" + KEY) is None  # released all the same


async def test_a_refresh_replaces_only_the_stale_entry_it_read(
    relaxed: KVStore, clock: FakeClock
) -> None:
    """Another writer's fresh value, written while a refresh ran, is not overwritten."""
    cache = Cache(relaxed)
    options: dict[str, Any] = {"ttl": 10, "stale_ttl": 100}
    await cache.get_or_set(KEY, done("v1"), **options)
    clock.advance(11)
    refresh = SlowFetch("v2 from an old read")
    running = asyncio.all_tasks()
    assert await cache.get_or_set(KEY, refresh, **options) == "v1"
    (background,) = asyncio.all_tasks() - running
    await refresh.started.wait()
    await Cache(relaxed).set(KEY, "fresh from elsewhere", ttl=10)
    refresh.release.set()
    await background
    assert await cache.get(KEY) == "fresh from elsewhere"


class HeldStore(MemoryStore):
    """A memory store that holds one call of a fenced fill open, to land other writers'
    calls in between: after a `delete_if_equals` that removed what the fill had read (the
    key is briefly absent before the `put_if_absent`), or before the `get_many` of marks
    (the fill's value is briefly stored before it is checked). `fail_marks` fails that read.
    """

    def __init__(self, clock: FakeClock) -> None:
        super().__init__(clock=clock)
        self.hold: str | None = None
        self.fail_marks = False
        self.held = asyncio.Event()
        self.resume = asyncio.Event()

    async def _wait(self, call: str) -> None:
        if self.hold == call:
            self.hold = None
            self.held.set()
            await self.resume.wait()

    async def _delete_if_equals(self, key: str, value: bytes) -> bool:
        deleted = await super()._delete_if_equals(key, value)
        if deleted:
            await self._wait("delete_if_equals")
        return deleted

    async def _get_entries(self, keys: list[str]) -> dict[str, tuple[bytes, str | None]]:
        await self._wait("get_entries")
        if self.fail_marks:
            raise KVBackendError("connection reset", backend="held")
        return await super()._get_entries(keys)


async def test_a_stale_fill_landing_in_another_fills_gap_is_taken_back(clock: FakeClock) -> None:
    """B reads "nothing" and fetches; C deletes (a tombstone); A reads the tombstone, fetches
    and removes it to store; B's put_if_absent lands in that gap. B's value predates C's
    delete, so B must take it back (C's mark on the key says so); A's stays."""
    kv = HeldStore(clock)
    stale_fetch = SlowFetch("fetched before the delete")
    stale = asyncio.ensure_future(Cache(kv).get_or_set(KEY, stale_fetch))
    await stale_fetch.started.wait()
    await Cache(kv).delete(KEY)
    kv.hold = "delete_if_equals"
    fresh = asyncio.ensure_future(Cache(kv).get_or_set(KEY, done("fetched after the delete")))
    await kv.held.wait()
    stale_fetch.release.set()
    assert await stale == "fetched before the delete"
    assert await Cache(kv).get(KEY, MISS) == MISS  # taken back, not left in the gap
    kv.resume.set()
    assert await fresh == "fetched after the delete"
    assert await Cache(kv).get(KEY) == "fetched after the delete"
    await kv.close()


async def test_a_read_while_an_undone_fill_was_stored_leaves_no_local_copy(
    clock: FakeClock,
) -> None:
    kv = HeldStore(clock)
    cache = Cache(kv, local_ttl=300)
    fetch = SlowFetch()
    filling = asyncio.ensure_future(cache.get_or_set(KEY, fetch))
    await fetch.started.wait()
    assert await Cache(kv).delete_prefix("customer:") == 0  # no entry yet: only the mark
    kv.hold = "get_entries"
    fetch.release.set()
    await kv.held.wait()
    assert await cache.get(KEY) == BEFORE  # the window: stored, not yet checked
    kv.resume.set()
    assert await filling == BEFORE
    assert await cache.get(KEY, MISS) == MISS  # taken back, and not kept locally either
    await kv.close()


async def test_a_fill_that_cannot_read_the_marks_is_not_kept(clock: FakeClock) -> None:
    kv = HeldStore(clock)
    cache = Cache(kv)
    kv.fail_marks = True
    assert await cache.get_or_set(KEY, done("unchecked")) == "unchecked"
    kv.fail_marks = False
    assert await cache.get(KEY, MISS) == MISS
    stats = cache.stats()
    assert (stats.sets, stats.errors) == (0, 1)
    assert await cache.get_or_set(KEY, done("checked")) == "checked"
    assert await cache.get(KEY) == "checked"
    await kv.close()


class NotedStore(MemoryStore):
    """A memory store that notes each call with the breaker's state when it started."""

    def __init__(self, breaker: CircuitBreaker) -> None:
        super().__init__()
        self.breaker = breaker
        self.down = False
        self.calls: list[tuple[str, str]] = []

    def _note(self, call: str) -> None:
        self.calls.append((call, self.breaker.state))
        if self.down:
            raise KVBackendError("connection refused", backend="noted")

    async def _get_value(self, key: str) -> bytes | None:
        self._note("get")
        return await super()._get_value(key)

    async def _put_if_absent(self, record: Record) -> bool:
        self._note("put_if_absent")
        return await super()._put_if_absent(record)

    async def _get_entries(self, keys: list[str]) -> dict[str, tuple[bytes, str | None]]:
        self._note("get_many")
        return await super()._get_entries(keys)


async def test_a_fill_that_is_the_breakers_probe_closes_it_at_the_first_answer() -> None:
    """A fenced write is several store calls; only its first may be the probe."""
    breaker_clock = FakeClock(start=0.0)
    breaker = CircuitBreaker(threshold=1, cooldown=10, clock=breaker_clock)
    kv = NotedStore(breaker)
    cache = Cache(kv, breaker=breaker)
    kv.down = True
    assert await cache.get(KEY, MISS) == MISS  # one failure opens the breaker
    kv.down = False

    async def fetch() -> str:
        breaker_clock.advance(10)  # the cool-down ends while the origin answers
        return "fetched"

    assert await cache.get_or_set(KEY, fetch) == "fetched"  # its read was skipped
    assert kv.calls[1:] == [("put_if_absent", "half-open"), ("get_many", "closed")]
    assert await cache.get(KEY) == "fetched"
    await kv.close()
