"""Failing open: store errors are misses or dropped writes, counted, logged once per burst,
and a circuit breaker skips a dead store; caller mistakes still raise."""

from __future__ import annotations

import logging

import pytest

from backends import FakeClock
from kvcache import KVBackendError, KVValidationError
from kvcache.cache import Cache, CircuitBreaker
from kvcache.kv.memory import MemoryStore
from kvcache.kv.types import KeyInfo, Record


class FlakyStore(MemoryStore):
    """A memory store whose backend primitives fail while `down` (fault injection).

    Validation runs before the primitives, as in every real backend, so bad keys
    raise KVValidationError whether or not the store is up.
    """

    def __init__(self) -> None:
        super().__init__()
        self.down = False
        self.calls = 0

    def _io(self) -> None:
        self.calls += 1
        if self.down:
            raise KVBackendError("connection refused", backend="flaky")

    async def _get_value(self, key: str) -> bytes | None:
        self._io()
        return await super()._get_value(key)

    async def _put(self, record: Record) -> None:
        self._io()
        await super()._put(record)

    async def _delete(self, key: str) -> None:
        self._io()
        await super()._delete(key)

    async def _list(self, prefix: str, start_after: str, limit: int) -> tuple[list[KeyInfo], bool]:
        self._io()
        return await super()._list(prefix, start_after, limit)

    async def _put_if_absent(self, record: Record) -> bool:
        self._io()
        return await super()._put_if_absent(record)


@pytest.fixture
def store() -> FlakyStore:
    return FlakyStore()


@pytest.fixture
def breaker_clock() -> FakeClock:
    return FakeClock(start=0.0)


def cache_on(store: FlakyStore, breaker_clock: FakeClock, **options: object) -> Cache:
    breaker = CircuitBreaker(threshold=3, cooldown=10, clock=breaker_clock)
    return Cache(store, breaker=breaker, **options)  # type: ignore[arg-type]


async def test_store_errors_fail_open_and_are_counted(
    store: FlakyStore, breaker_clock: FakeClock
) -> None:
    cache = cache_on(store, breaker_clock)
    await cache.set("k", "v")
    store.down = True
    assert await cache.get("k", "default") == "default"
    await cache.set("k", "new")  # dropped
    await cache.delete("k")  # dropped
    stats = cache.stats()
    assert (stats.errors, stats.skipped, stats.misses, stats.sets, stats.deletes) == (3, 0, 1, 1, 0)
    store.down = False
    assert await cache.get("k") is None  # three failures in a row opened the breaker
    assert (cache.stats().errors, cache.stats().skipped) == (3, 1)
    breaker_clock.advance(10)
    assert await cache.get("k") == "v"


async def test_get_or_set_fetches_when_the_store_is_down(
    store: FlakyStore, breaker_clock: FakeClock
) -> None:
    cache = cache_on(store, breaker_clock)
    store.down = True
    calls = 0

    async def fetch() -> str:
        nonlocal calls
        calls += 1
        return "from origin"

    assert await cache.get_or_set("k", fetch, lock=True) == "from origin"
    assert await cache.get_or_set("k", fetch) == "from origin"
    assert calls == 2
    assert cache.stats().errors >= 2


async def test_delete_prefix_failure_is_counted(
    store: FlakyStore, breaker_clock: FakeClock
) -> None:
    cache = cache_on(store, breaker_clock)
    store.down = True
    assert await cache.delete_prefix("p:") == 0
    assert (cache.stats().by_family["p"].errors, cache.stats().by_family["p"].skipped) == (1, 0)


async def test_breaker_skips_the_store_for_the_cooldown_then_probes(
    store: FlakyStore, breaker_clock: FakeClock
) -> None:
    cache = cache_on(store, breaker_clock)
    store.down = True
    for _ in range(3):
        await cache.get("k")
    assert store.calls == 3
    for _ in range(10):
        await cache.get("k")
        await cache.set("k", 1)
    assert store.calls == 3  # open: nothing reached the store
    assert (cache.stats().errors, cache.stats().skipped) == (3, 20)
    breaker_clock.advance(10)
    await cache.get("k")  # the probe; it fails, so the breaker opens again, for 20 s
    await cache.get("k")
    assert store.calls == 4
    breaker_clock.advance(10)
    store.down = False
    await cache.set("k", "still skipped")
    assert store.calls == 4
    breaker_clock.advance(10)
    await cache.set("k", "back")  # the second probe succeeds and closes the breaker
    assert await cache.get("k") == "back"
    assert store.calls == 6
    assert (cache.stats().errors, cache.stats().skipped) == (4, 22)


async def test_bad_keys_raise_while_the_breaker_is_open(
    store: FlakyStore, breaker_clock: FakeClock
) -> None:
    cache = cache_on(store, breaker_clock, local_ttl=60)
    store.down = True
    for _ in range(3):
        await cache.get("k")
    with pytest.raises(KVValidationError):
        await cache.get("")
    with pytest.raises(KVValidationError):
        await cache.set("x" * 600, 1)
    with pytest.raises(KVValidationError):
        await cache.delete(".")
    with pytest.raises(KVValidationError):
        await cache.get_or_set("", lambda: 1)  # type: ignore[arg-type, return-value]
    with pytest.raises(KVValidationError):
        await cache.delete_prefix("p" * 600)


async def test_failures_are_logged_once_per_burst(
    store: FlakyStore, breaker_clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    cache = cache_on(store, breaker_clock)
    store.down = True
    with caplog.at_level(logging.WARNING, logger="kvcache.cache"):
        for _ in range(50):
            await cache.get("k")
        breaker_clock.advance(10)
        for _ in range(50):
            await cache.get("k")
        store.down = False
        breaker_clock.advance(20)  # the failed probe doubled the cool-down
        await cache.get("k")
    messages = [record.getMessage() for record in caplog.records]
    assert len(messages) == 3, messages
    assert "get failed, failing open: flaky: connection refused" in messages[0]
    assert "failed 3 times in a row" in messages[1]
    assert "recovered after 4 failed calls" in messages[2]


@pytest.mark.parametrize(
    "options",
    [
        {"threshold": 0},
        {"threshold": 1.5},
        {"threshold": True},
        {"cooldown": -1},
        {"cooldown": float("nan")},
        {"cooldown": float("inf")},
        {"cooldown": 2, "max_cooldown": 1},
        {"max_cooldown": float("inf")},
    ],
)
def test_breaker_checks_its_options(options: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        CircuitBreaker(**options)  # type: ignore[arg-type]


def test_breaker_defaults() -> None:
    breaker = CircuitBreaker()
    assert (breaker.threshold, breaker.cooldown, breaker.max_cooldown) == (5, 0.25, 1.0)
    assert "closed" in repr(breaker)
    assert CircuitBreaker(cooldown=10).max_cooldown == 40
