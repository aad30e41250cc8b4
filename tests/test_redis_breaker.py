"""The cache's breaker against a real redis-server that is killed (SIGKILL) and restarted,
or frozen (SIGSTOP) and thawed, under 50 concurrent `get_or_set` callers, with the
default deadlines and breaker.

Every store call the cache makes is noted with the breaker's state when it started,
so the checks are counts and states, never wall-clock times: callers see no
exception; while the breaker is open exactly one call per cool-down reaches the
store; the first call after Redis answers again succeeds (so the store is used
again within one cool-down, at most `max_cooldown`); calls caught by the freeze end
by the store's own deadline. bench/bench_breaker.py measures the times.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
import redis.exceptions

import kvcache
from backends import fresh_namespace
from kvcache import KVBackendError, KVStore
from kvcache.cache import Cache, CircuitBreaker
from kvcache.kv.redis import RedisStore
from kvcache.kv.types import KeyInfo, Record
from redis_server import RedisServer

CALLERS = 50
T = TypeVar("T")


@dataclass
class Call:
    phase: str
    state: str  # the breaker's state when the call started
    ok: bool = False
    error: BaseException | None = None


class Watched(KVStore):
    """A RedisStore seen through its primitives: every call is noted in `calls`."""

    def __init__(self, inner: RedisStore) -> None:
        super().__init__(namespace=inner.namespace, limits=inner.limits, clock=inner.clock)
        self.inner = inner
        self.breaker = CircuitBreaker()
        self.phase = "up"
        self.calls: list[Call] = []

    async def _note(self, call: Awaitable[T]) -> T:
        note = Call(self.phase, self.breaker.state)
        self.calls.append(note)
        try:
            result = await call
        except BaseException as exc:
            note.error = exc
            raise
        note.ok = True
        return result

    def during(self, phase: str) -> list[Call]:
        return [call for call in self.calls if call.phase == phase]

    async def _get_value(self, key: str) -> bytes | None:
        return await self._note(self.inner._get_value(key))

    async def _get_entry(self, key: str) -> tuple[bytes, str | None] | None:
        return await self._note(self.inner._get_entry(key))

    async def _get_entries(self, keys: list[str]) -> dict[str, tuple[bytes, str | None]]:
        return await self._note(self.inner._get_entries(keys))

    async def _list(self, prefix: str, start_after: str, limit: int) -> tuple[list[KeyInfo], bool]:
        return await self._note(self.inner._list(prefix, start_after, limit))

    async def _put(self, record: Record) -> None:
        await self._note(self.inner._put(record))

    async def _put_many(self, records: list[Record]) -> None:
        await self._note(self.inner._put_many(records))

    async def _delete(self, key: str) -> None:
        await self._note(self.inner._delete(key))

    async def _delete_many(self, keys: list[str]) -> None:
        await self._note(self.inner._delete_many(keys))

    async def _put_if_absent(self, record: Record) -> bool:
        return await self._note(self.inner._put_if_absent(record))

    async def _delete_if_equals(self, key: str, value: bytes) -> bool:
        return await self._note(self.inner._delete_if_equals(key, value))

    async def _close(self) -> None:
        await self.inner.close()


class Callers:
    """CALLERS tasks calling `get_or_set` over 200 keys until stopped; keeps what they got."""

    def __init__(self, cache: Cache) -> None:
        self.cache = cache
        self.stop = asyncio.Event()
        self.wrong: list[Any] = []
        self.served = 0

    async def run_one(self, index: int) -> None:
        i = index
        while not self.stop.is_set():
            key = f"customer:{i % 200}"

            async def fetch(key: str = key) -> str:
                await asyncio.sleep(0.002)
                return f"value of {key}"

            value = await self.cache.get_or_set(key, fetch, ttl=60)
            if value != f"value of {key}":
                self.wrong.append(value)
            self.served += 1
            i += CALLERS
            await asyncio.sleep(0.02)  # 2,500 calls a second in all: busy, not saturated

    async def __aenter__(self) -> Callers:
        self.tasks = [asyncio.ensure_future(self.run_one(i)) for i in range(CALLERS)]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.stop.set()
        outcomes = await asyncio.gather(*self.tasks, return_exceptions=True)
        self.exceptions = [o for o in outcomes if isinstance(o, BaseException)]


async def until(check: Callable[[], bool], guard: float = 30.0) -> None:
    """Wait for `check` to hold; `guard` only stops a hang, it is not a timing."""
    loop = asyncio.get_running_loop()
    give_up = loop.time() + guard
    while not check():
        assert loop.time() < give_up, "gave up waiting"
        await asyncio.sleep(0.01)


@pytest.fixture
def server(tmp_path: Path) -> RedisServer:
    return RedisServer(tmp_path / "redis").start()


async def watched_cache(server: RedisServer, options: str = "") -> tuple[Watched, Cache]:
    inner = await kvcache.open_kv(server.url + options, namespace=fresh_namespace())
    assert isinstance(inner, RedisStore)
    store = Watched(inner)
    return store, Cache(store, breaker=store.breaker)


def assert_one_call_per_cooldown(store: Watched) -> None:
    """Calls started while the breaker was open are its probes, one per cool-down."""
    while_open = [call for call in store.calls if call.state != "closed"]
    assert len(while_open) == store.breaker.probes
    # allow() marks the breaker half-open before the probe starts, so a call that
    # started in "open" state would be a second, unauthorised one.
    assert all(call.state == "half-open" for call in while_open)


async def test_killed_and_restarted_under_50_callers(server: RedisServer) -> None:
    # A dead server refuses connections at once; the long timeouts only keep a freshly
    # restarted one that is slow to answer on a loaded machine from failing a call.
    store, cache = await watched_cache(server, "?socket_timeout=2&write_timeout=2")
    try:
        async with Callers(cache) as callers:
            await until(lambda: callers.served > 300)
            store.phase = "down"
            server.kill()
            await until(lambda: store.breaker.is_open)
            # Let several cool-downs pass while Redis is dead (a count, not a time).
            await until(lambda: len([c for c in store.during("down") if c.state != "closed"]) >= 4)
            server.start()  # returns once redis-server answers PING
            store.phase = "back"
            await until(lambda: any(call.ok for call in store.during("back")))
            served = callers.served
            await until(lambda: callers.served > served + 300)
        assert callers.exceptions == [] and callers.wrong == []
        down, back = store.during("down"), store.during("back")
        probes = [call for call in down if call.state != "closed"]
        assert all(isinstance(call.error, KVBackendError) for call in down)
        assert len(probes) >= 4
        assert store.breaker.delay == store.breaker.cooldown  # reset by the recovery
        # The cool-down had backed off to max_cooldown, and the first call after Redis
        # answered was the one probe of that cool-down, and it worked.
        assert back[0].ok and back[0].state == "half-open"
        assert all(call.ok for call in back)
        assert_one_call_per_cooldown(store)
        stats = cache.stats()
        assert stats.errors == len([call for call in store.calls if call.error is not None])
        assert stats.skipped > 0
    finally:
        await store.close()
        server.stop()


async def test_frozen_then_thawed_under_50_callers(server: RedisServer) -> None:
    store, cache = await watched_cache(server)
    try:
        async with Callers(cache) as callers:
            await until(lambda: callers.served > 300)
            os.kill(server.pid, signal.SIGSTOP)
            store.phase = "frozen"
            try:
                await until(lambda: store.breaker.is_open)
                await until(
                    lambda: len([c for c in store.during("frozen") if c.state != "closed"]) >= 3
                )
                served = callers.served
                await until(lambda: callers.served > served + 100)  # still served, as misses
            finally:
                os.kill(server.pid, signal.SIGCONT)
                store.phase = "thawed"
            await until(lambda: store.breaker.closed())
            served = callers.served
            await until(lambda: callers.served > served + 300)
        assert callers.exceptions == [] and callers.wrong == []
        frozen = store.during("frozen")
        failed = [call for call in frozen if call.error is not None]
        assert failed and all(call.ok or call.error is not None for call in frozen)
        for call in failed:  # each ended by the store's deadline, not a socket's
            assert isinstance(call.error, KVBackendError)
            assert isinstance(call.error.cause, redis.exceptions.TimeoutError)
            assert "no reply within 0.25 s" in str(call.error) or "within 0.4" in str(call.error)
        while_closed = [call for call in frozen if call.state == "closed"]
        assert len(while_closed) <= 2 * CALLERS  # a read and a write each, at most
        assert_one_call_per_cooldown(store)
        assert store.during("thawed") and store.during("thawed")[-1].ok
    finally:
        await store.close()
        server.stop()
