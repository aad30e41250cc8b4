"""Stampede control for `Cache.get_or_set`: one fetch per key at a time.

In a process, concurrent misses of a key share one task (single-flight); the
task runs apart from its callers, so a caller that is cancelled cancels nobody
else's fetch. Across processes, on stores with atomic `put_if_absent`, the task
first takes a short lease on the key: the holder fetches and stores, the others
poll the store with backoff until the value appears or `lock_timeout` passes,
then fetch themselves (a holder that died must not block its key for long).

A lease is the key `<prefix>.lease:<key>` holding `<token>|<deadline>`. The
deadline is in the value because stores refuse expiries under their minimum
(60 s on Workers KV); a lease past its deadline may be taken over at once.

Every fill carries a `Fence`: what it read before fetching. An invalidation in
this process voids the running fills it covers (they still answer their callers,
but store nothing, and later callers start a fresh fetch); the fence makes the
store refuse the write of a fill that another process invalidated (`_fence`).
"""

from __future__ import annotations

import asyncio
import inspect
import math
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from ..kv.base import KVStore
from ._breaker import STORE_ERRORS
from ._fence import LEASE, Fence, internal_key
from ._local import MISS
from .stats import Counters

__all__ = ["FillArgs", "Flights", "Host"]

#: (ttl, negative_ttl, stale seconds, lock), checked by the cache.
FillArgs = tuple[int | None, int | None, float, bool]
#: What a fill returns: the value and its serialized form (None when not stored).
Filled = tuple[Any, Any]

_FIRST_POLL = 0.01
_MAX_POLL = 0.25


def _retrieve(task: asyncio.Task[Filled]) -> None:
    """A background refresh's error is counted and logged by the cache, not re-raised."""
    if not task.cancelled():
        task.exception()


@dataclass(frozen=True, slots=True)
class Host:
    """What a fill needs of its cache: the store, and the cache's read, write and failure paths."""

    kv: KVStore
    prefix: str
    lock_timeout: float
    clock: Callable[[], float]
    #: (value, serialized, stale, raw) of a full key; value is MISS when absent or unusable.
    read: Callable[[str, Counters], Awaitable[tuple[Any, Any, bool, Any]]]
    #: Write a fill's envelope unless its fence broke:
    #: (full, key, value, serialized, ttl, stale seconds, fence).
    store: Callable[[str, str, Any, Any, int | None, float, Fence], Awaitable[None]]
    #: A store call failed: (operation, error, counters).
    failed: Callable[[str, BaseException, Counters], None]
    family: Callable[[str], Counters]
    allow: Callable[[], bool]
    dumps: Callable[[Any], Any]


@dataclass(eq=False, slots=True)
class _Fill:
    """One running fetch: its task, its fence, and whether an invalidation voided it."""

    fence: Fence
    task: asyncio.Task[Filled] | None = None
    void: bool = False
    #: Set while the fill writes to the store; an invalidation waits for it to end.
    storing: asyncio.Future[None] | None = None


class Flights:
    """The fetches running for one cache, keyed by full key."""

    def __init__(self, host: Host) -> None:
        self._host = host
        #: The fill a miss of a key joins; a voided fill leaves it at once.
        self._running: dict[str, _Fill] = {}
        self._tasks: set[asyncio.Task[Filled]] = set()
        #: How many fetches have ended; a caller notes it before reading the store.
        self.finished = 0

    async def fill(
        self,
        full: str,
        key: str,
        fetch: Callable[[], Awaitable[Any]],
        args: FillArgs,
        seen: int | None = None,
        raw: Any = None,
    ) -> Filled:
        """Join the running fetch of `full`, or start one; every joiner gets its outcome.

        `raw` is what the caller read (its fence). `seen` is `finished` as it was
        before that read. If a fetch ended since, it may have stored the value
        after the read: look again before fetching, so a slow reader never starts
        a second fetch.
        """
        running = self._running.get(full)
        if running is None and seen is not None and seen != self.finished:
            host = self._host
            value, serialized, stale, raw = await host.read(full, host.family(key))
            if value is not MISS and not stale:
                return value, serialized
            running = self._running.get(full)
        task = running.task if running is not None else None
        if task is None:
            task = self._start(full, key, fetch, args, raw)
        return await asyncio.shield(task)

    def refresh(
        self, full: str, key: str, fetch: Callable[[], Awaitable[Any]], args: FillArgs, raw: Any
    ) -> None:
        """Start a background fetch of `full` unless one is running."""
        if full not in self._running:
            self._start(full, key, fetch, args, raw).add_done_callback(_retrieve)

    async def invalidate(self, full: str, *, prefix: bool = False) -> None:
        """Keep the running fills of `full` (or of every key under it) from storing.

        Voids them at once, then waits for any of them writing right now, so that
        its write lands before the caller's invalidation reaches the store.
        """
        running = self._running
        if prefix:
            names = [name for name in running if name.startswith(full)]
        elif full in running:
            names = [full]
        else:
            return
        storing = []
        for name in names:
            fill = running.pop(name)
            fill.void = True
            if fill.storing is not None:
                storing.append(fill.storing)
        if storing:
            await asyncio.wait(storing)

    async def cancel_all(self) -> None:
        tasks = list(self._tasks)
        self._running.clear()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _start(
        self, full: str, key: str, fetch: Callable[[], Awaitable[Any]], args: FillArgs, raw: Any
    ) -> asyncio.Task[Filled]:
        fill = _Fill(Fence(raw, self._host.clock()))
        task = asyncio.get_running_loop().create_task(self._run(fill, full, key, fetch, args))
        fill.task = task
        self._running[full] = fill
        self._tasks.add(task)
        return task

    async def _run(
        self, fill: _Fill, full: str, key: str, fetch: Callable[[], Awaitable[Any]], args: FillArgs
    ) -> Filled:
        try:
            if args[3] and self._host.kv.atomic and self._host.allow():
                return await self._with_lease(fill, full, key, fetch, args)
            return await self._fetch_and_store(fill, full, key, fetch, args)
        finally:
            self.finished += 1
            if fill.task is not None:
                self._tasks.discard(fill.task)
            if self._running.get(full) is fill:
                del self._running[full]

    async def _fetch_and_store(
        self, fill: _Fill, full: str, key: str, fetch: Callable[[], Awaitable[Any]], args: FillArgs
    ) -> Filled:
        host = self._host
        ttl, negative_ttl, stale, _ = args
        counters = host.family(key)
        counters.fetches += 1
        start = time.perf_counter()
        try:
            value = fetch()
            if inspect.isawaitable(value):
                value = await value
        except Exception:
            counters.fetch_errors += 1
            raise
        finally:
            counters.fetch_seconds += time.perf_counter() - start
        if value is None:
            if negative_ttl is None:
                return None, None
            ttl, stale = negative_ttl, 0.0
        serialized = host.dumps(value)
        if not fill.void:
            fill.storing = asyncio.get_running_loop().create_future()
            try:
                await host.store(full, key, value, serialized, ttl, stale, fill.fence)
            finally:
                fill.storing.set_result(None)
                fill.storing = None
        return value, serialized

    async def _with_lease(
        self, fill: _Fill, full: str, key: str, fetch: Callable[[], Awaitable[Any]], args: FillArgs
    ) -> Filled:
        host = self._host
        lease = self._lease_key(key)
        loop = asyncio.get_running_loop()
        give_up = loop.time() + host.lock_timeout
        delay = _FIRST_POLL
        while True:
            token = await self._acquire(lease, key)
            if token is None:  # the store failed: fetch without a lease
                break
            if token:
                try:
                    value, serialized, stale, raw = await host.read(full, host.family(key))
                    if value is not MISS and not stale:
                        return value, serialized
                    fill.fence = Fence(raw, host.clock())
                    return await self._fetch_and_store(fill, full, key, fetch, args)
                finally:
                    await self._release(lease, token, key)
            remaining = give_up - loop.time()
            if remaining <= 0:
                break
            await asyncio.sleep(min(delay, remaining))
            delay = min(delay * 2, _MAX_POLL) * (0.75 + secrets.randbelow(50) / 100)
            value, serialized, stale, raw = await host.read(full, host.family(key))
            if value is not MISS and not stale:
                return value, serialized
            fill.fence = Fence(raw, host.clock())
        return await self._fetch_and_store(fill, full, key, fetch, args)

    def _lease_key(self, key: str) -> str:
        return internal_key(self._host.prefix, LEASE, key, self._host.kv)

    async def _acquire(self, lease: str, key: str) -> str | None:
        """Our lease value if we now hold the lease; "" if another does; None on store failure."""
        host = self._host
        kv = host.kv
        now = host.clock()
        mine = f"{secrets.token_hex(8)}|{now + host.lock_timeout:.3f}"
        store_ttl = max(math.ceil(host.lock_timeout), kv.limits.min_expiration_ttl)
        try:
            if await kv.put_if_absent(lease, mine, expiration_ttl=store_ttl):
                return mine
            held = await kv.get(lease)
            if held is not None and _lease_deadline(held) <= now:
                # The holder is past its deadline (it died or is too slow): take over.
                await kv.delete_if_equals(lease, held)
                if await kv.put_if_absent(lease, mine, expiration_ttl=store_ttl):
                    return mine
        except STORE_ERRORS as exc:
            host.failed("lease", exc, host.family(key))
            return None
        return ""

    async def _release(self, lease: str, mine: str, key: str) -> None:
        try:
            await self._host.kv.delete_if_equals(lease, mine)
        except STORE_ERRORS as exc:
            self._host.failed("lease release", exc, self._host.family(key))


def _lease_deadline(value: str) -> float:
    try:
        return float(value.rpartition("|")[2])
    except ValueError:
        return 0.0  # not a lease we wrote: treat as expired
