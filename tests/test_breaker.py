"""The circuit breaker's states on a fake clock: closed, open, half-open with exactly one
probe, the cool-down doubling while probes fail and resetting on success; and the cache's
accounting of it (`skipped` apart from `errors`, in stats and in Prometheus)."""

from __future__ import annotations

import asyncio

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from backends import FakeClock
from kvcache import KVBackendError
from kvcache.cache import Cache, CircuitBreaker
from kvcache.kv.memory import MemoryStore
from kvcache.kv.types import Record
from kvcache.stats import register_prometheus

BOOM = KVBackendError("connection refused", backend="test")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(start=100.0)


def tripped(clock: FakeClock, **options: float) -> CircuitBreaker:
    """A breaker with threshold 2, opened by two failures at the clock's current time."""
    breaker = CircuitBreaker(threshold=2, clock=clock, **options)
    breaker.failure("get", BOOM)
    assert breaker.state == "closed"
    breaker.failure("get", BOOM)
    assert breaker.state == "open"
    return breaker


def test_open_skips_until_the_cooldown_then_lets_exactly_one_probe_through(
    clock: FakeClock,
) -> None:
    breaker = tripped(clock, cooldown=1.0)
    assert not breaker.allow()
    clock.advance(0.999)
    assert not breaker.allow()
    clock.advance(0.001)
    assert breaker.allow()  # the probe
    assert breaker.state == "half-open"
    assert [breaker.allow() for _ in range(100)] == [False] * 100
    assert (breaker.probes, breaker.trips) == (1, 1)


def test_failed_probes_double_the_cooldown_up_to_the_maximum(clock: FakeClock) -> None:
    breaker = tripped(clock, cooldown=1.0, max_cooldown=8.0)
    waits = []
    for _ in range(6):
        start = clock.now
        while not breaker.allow():
            clock.advance(0.25)
        waits.append(clock.now - start)
        breaker.failure("get", BOOM)
    assert waits == [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    assert breaker.probes == 6 and breaker.trips == 1 and breaker.state == "open"


def test_a_successful_probe_closes_and_resets_the_cooldown(clock: FakeClock) -> None:
    breaker = tripped(clock, cooldown=1.0)
    clock.advance(1.0)
    assert breaker.allow()
    breaker.failure("get", BOOM)  # cool-down now 2 s
    clock.advance(2.0)
    assert breaker.allow()
    breaker.success()
    assert (breaker.state, breaker.failures, breaker.delay) == ("closed", 0, 1.0)
    assert all(breaker.allow() for _ in range(10))
    breaker.failure("get", BOOM)
    breaker.failure("get", BOOM)
    clock.advance(0.999)
    assert not breaker.allow()
    clock.advance(0.001)
    assert breaker.allow()  # the fresh burst starts from the first cool-down again
    assert breaker.trips == 2


def test_a_probe_that_never_reports_frees_the_slot_after_one_cooldown(clock: FakeClock) -> None:
    breaker = tripped(clock, cooldown=1.0)
    clock.advance(1.0)
    assert breaker.allow()  # this probe's caller is cancelled and never reports
    clock.advance(0.999)
    assert not breaker.allow()
    clock.advance(0.001)
    assert breaker.allow()
    assert breaker.probes == 2


def test_failures_of_calls_made_before_the_breaker_opened_change_nothing(
    clock: FakeClock,
) -> None:
    breaker = tripped(clock, cooldown=1.0)
    for _ in range(40):  # the rest of a burst of concurrent calls, failing late
        breaker.failure("get", BOOM)
    assert (breaker.delay, breaker.open_until, breaker.trips) == (1.0, 101.0, 1)
    assert breaker.failures == 42
    assert breaker.closed() is False and breaker.is_open


class GatedStore(MemoryStore):
    """A memory store whose reads fail while `down` and wait for `gate` when it is set."""

    def __init__(self) -> None:
        super().__init__()
        self.down = False
        self.gate: asyncio.Event | None = None
        self.calls = 0

    async def _io(self) -> None:
        self.calls += 1
        if self.gate is not None:
            await self.gate.wait()
        if self.down:
            raise BOOM

    async def _get_value(self, key: str) -> bytes | None:
        await self._io()
        return await super()._get_value(key)

    async def _put(self, record: Record) -> None:
        await self._io()
        await super()._put(record)


async def test_while_the_probe_is_out_concurrent_callers_skip_and_are_counted(
    clock: FakeClock,
) -> None:
    store = GatedStore()
    cache = Cache(store, breaker=CircuitBreaker(threshold=2, cooldown=1.0, clock=clock))
    await cache.set("k", "v")
    store.down = True
    assert await cache.get("k", "miss") == "miss"
    assert await cache.get("k", "miss") == "miss"
    assert store.calls == 3
    clock.advance(1.0)
    store.down, store.gate = False, asyncio.Event()
    probe = asyncio.ensure_future(cache.get("k", "miss"))
    await asyncio.sleep(0)
    others = [await cache.get("k", "miss") for _ in range(50)]

    async def origin() -> str:
        return "origin"

    fills = [await cache.get_or_set(f"f{i}", origin) for i in range(5)]
    assert others == ["miss"] * 50 and fills == ["origin"] * 5
    assert store.calls == 4  # only the probe reached the store
    store.gate.set()
    assert await probe == "v"
    assert await cache.get("k") == "v"
    stats = cache.stats()
    assert (stats.errors, stats.skipped) == (2, 60)  # 50 gets, 5 reads and 5 writes of fills
    assert stats.by_family[""].skipped == 60


async def test_prometheus_exports_skipped_beside_errors(clock: FakeClock) -> None:
    store = GatedStore()
    cache = Cache(store, breaker=CircuitBreaker(threshold=1, clock=clock))
    store.down = True
    await cache.get("customer:email:a")
    await cache.get("customer:email:b")
    registry = CollectorRegistry()
    register_prometheus(cache, registry)
    text = generate_latest(registry).decode()
    assert 'kvcache_cache_errors_total{cache="",family="customer:email"} 1.0' in text
    assert 'kvcache_cache_skipped_total{cache="",family="customer:email"} 1.0' in text
    assert "# HELP kvcache_cache_skipped_total Store calls not made" in text
    assert cache.stats().as_dict()["skipped"] == 1
