"""The cache layer: dogpile's "region" over any store.

`Cache` owns everything a cache needs beyond storage: default and minimum TTLs,
jitter, serialization, the stored envelope, single-flight and cross-process
stampede control, the in-process tier, failing open with a circuit breaker, and
statistics. The store sees only strings and TTLs.

The stored envelope is ``<fresh_until>|<payload>``: a header, a bar, then the
serializer's output (``|{"id":1}``). The header is empty unless the entry was
written with a stale window; then it is the epoch second at which the value
stops being fresh, and the store keeps the entry `stale_ttl` seconds longer so
`get_or_set(..., stale_ttl=...)` can serve it while it refreshes. Otherwise the
store's own expiry ends the value. A JSON ``null`` is a stored value; only the
store's None is a miss, and so is a tombstone (``~<token>|``), which invalidations
write so that a fill begun before them cannot store (see `_fence`).
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Final, TypeVar

from ..kv import validation as v
from ..kv.base import KVStore
from ..kv.errors import KVValidationError
from ._breaker import STORE_ERRORS, CircuitBreaker, logger
from ._fence import Fence, Fences
from ._flight import Flights, Host
from ._invalidate import Invalidations
from ._local import IMMUTABLE, MISS, LocalTier
from ._ttl import DEFAULT, CacheTTLWarning, TTLPolicy, check_seconds
from .decorators import CachedFunction, P, cached
from .serializers import JSON, Serializer
from .stats import CacheStats, Counters, StatsRecorder

__all__ = ["DEFAULT", "Cache", "CacheStats", "CacheTTLWarning", "CircuitBreaker"]

T = TypeVar("T")

#: What a serializer may raise on data it cannot read: anything. Such an entry is a
#: counted miss, and the next fill overwrites it.
_UNREADABLE: Final = (Exception,)
_NOTHING: Final = (MISS, None, False)
_LOOKUP_MISS: Final = object()


def _check_fetch(fetch: object) -> None:
    if not callable(fetch):
        raise TypeError(f"fetch must be an async callable, not {type(fetch).__name__}")


class Cache:
    """A cache over a `KVStore`: get, set, delete(_many), delete_prefix, get_or_set, lookup.

    `prefix` is prepended to every key in the store (never part of stats'
    families). `local_ttl` adds an in-process LRU tier of `local_maxsize` keys.
    `jitter` (0 to <1) shortens each TTL by a random fraction up to it, so keys
    written together do not expire together. `lock_timeout` bounds how long
    `get_or_set(lock=True)` waits for another process's fetch. `family` maps a
    key to its statistics family (default: the key without its last `:` segment).
    The cache borrows `kv`: `close()` leaves it open.
    """

    def __init__(
        self,
        kv: KVStore,
        *,
        default_ttl: float | None = 3600,
        prefix: str = "",
        serializer: Serializer = JSON,
        local_ttl: float | None = None,
        local_maxsize: int = 10_000,
        jitter: float = 0.0,
        lock_timeout: float = 10.0,
        breaker: CircuitBreaker | None = None,
        family: Callable[[str], str] | None = None,
    ) -> None:
        if not isinstance(kv, KVStore):
            raise TypeError(f"kv must be a KVStore (see kvcache.open_kv), not {type(kv).__name__}")
        if not isinstance(prefix, str):
            raise TypeError(f"prefix must be str, not {type(prefix).__name__}")
        if not callable(getattr(serializer, "dumps", None)) or not callable(
            getattr(serializer, "loads", None)
        ):
            raise TypeError("serializer needs dumps() and loads() methods")
        if isinstance(local_maxsize, bool) or not isinstance(local_maxsize, int):
            raise TypeError("local_maxsize must be an int")
        if local_maxsize < 1:
            raise KVValidationError(f"Invalid local_maxsize of {v.shown(local_maxsize)}.")
        if breaker is not None and not isinstance(breaker, CircuitBreaker):
            raise TypeError(f"breaker must be a CircuitBreaker, not {type(breaker).__name__}")
        self.kv = kv
        self.prefix = prefix
        self.serializer = serializer
        self.lock_timeout = check_seconds("lock_timeout", lock_timeout)
        self._clock = kv.clock
        self._binary = bool(getattr(serializer, "binary", False))
        self._sep: Any = b"|" if self._binary else "|"
        self._tombstone: Any = b"~" if self._binary else "~"
        self._read_type = "bytes" if self._binary else "text"
        self._loads = serializer.loads
        self._ttl = TTLPolicy(kv.limits, jitter=jitter)
        if family is not None and not callable(family):
            raise TypeError(f"family must be callable, not {type(family).__name__}")
        self._stats = StatsRecorder(family=family)
        self._by_key = self._stats.by_key
        self._breaker = breaker if breaker is not None else CircuitBreaker()
        self._local: LocalTier | None = None
        if local_ttl is not None:
            self._local = LocalTier(
                ttl=check_seconds("local_ttl", local_ttl),
                maxsize=local_maxsize,
                clock=self._clock,
                loads=serializer.loads,
            )
        self._fences = Fences(kv, prefix, self._breaker.success)
        self._flights = Flights(
            Host(
                kv=kv,
                prefix=prefix,
                lock_timeout=self.lock_timeout,
                clock=self._clock,
                read=self._read,
                store=self._store,
                failed=self._failed,
                family=self._stats.family,
                allow=self._breaker.closed,
                dumps=serializer.dumps,
            )
        )
        self._invalidations = Invalidations(
            kv,
            prefix,
            self._local,
            self._flights,
            self._fences,
            self._breaker,
            self._stats,
            self._failed,
        )
        self._ttl.default = self._ttl.base(default_ttl, "default_ttl")

    # -- reads -------------------------------------------------------------

    async def get(self, key: str, default: Any = None) -> Any:
        """The cached value, or `default` on a miss. A cached None, 0, "" or [] is a hit."""
        if key.__class__ is not str:
            raise TypeError(f"key must be str, not {type(key).__name__}")
        full = self.prefix + key
        counters = self._by_key.get(key) or self._stats.family(key)
        local = self._local
        version = 0
        if local is not None:
            value = local.get(full)
            if value is not MISS:
                counters.hits += 1
                return value
            version = local.version
        # `_read` inlined: this is the hot path that the benchmarks measure.
        if self._breaker.open_until and self._skip_store(full, "GET", counters):
            raw = None
        else:
            try:
                raw = await self.kv.get(full, self._read_type)
            except STORE_ERRORS as exc:
                self._failed("get", exc, counters)
                raw = None
            else:
                if self._breaker.failures:
                    self._breaker.success()
        if raw is not None:
            head, sep, body = raw.partition(self._sep)
            if sep and not head:  # no stale window: `_decode`'s common case, inlined
                try:
                    value = self._loads(body)
                except _UNREADABLE:
                    pass  # `_decode` counts and logs it
                else:
                    if local is not None and local.version == version:
                        local.put(full, value, body, 0)
                    counters.hits += 1
                    return value
            value, _, stale = self._decode(raw, full, counters, version)
            if value is not MISS and not stale:
                counters.hits += 1
                return value
        counters.misses += 1
        return default

    async def get_or_set(
        self,
        key: str,
        fetch: Callable[[], Awaitable[T]],
        ttl: float | None = DEFAULT,
        negative_ttl: float | None = None,
        stale_ttl: float | None = None,
        lock: bool = False,
    ) -> T:
        """The cached value, or `await fetch()` stored for `ttl` (once per key at a time).

        Concurrent misses of one key share one fetch; if it raises, all of them
        get the exception and nothing is stored. None from `fetch` is stored for
        `negative_ttl` when given, otherwise not. With `stale_ttl`, a value up to
        that many seconds past its TTL is returned at once while one background
        refresh runs. `lock=True` on an atomic store also keeps other processes
        from fetching the same key at the same time. Arguments other than `key`
        are checked on a miss.
        """
        if key.__class__ is not str:
            raise TypeError(f"key must be str, not {type(key).__name__}")
        full = self.prefix + key
        counters = self._by_key.get(key) or self._stats.family(key)
        local = self._local
        if local is not None:
            value = local.get(full)
            if value is not MISS:
                counters.hits += 1
                return value  # type: ignore[no-any-return]
        seen = self._flights.finished
        value, _, stale, raw = await self._read(full, counters)
        if value is not MISS:
            if not stale:
                counters.hits += 1
                return value  # type: ignore[no-any-return]
            if stale_ttl is not None:
                _check_fetch(fetch)
                counters.stale_hits += 1
                self._flights.refresh(
                    full, key, fetch, self._ttl.fill_args(ttl, negative_ttl, stale_ttl, lock), raw
                )
                return value  # type: ignore[no-any-return]
        counters.misses += 1
        _check_fetch(fetch)
        args = self._ttl.fill_args(ttl, negative_ttl, stale_ttl, lock)
        value, serialized = await self._flights.fill(full, key, fetch, args, seen, raw)
        if serialized is None or value.__class__ in IMMUTABLE:
            return value  # type: ignore[no-any-return]
        return self._loads(serialized)  # type: ignore[no-any-return]

    async def lookup(
        self,
        key: str,
        fetch: Callable[[], Awaitable[T]],
        ttl: float | None = DEFAULT,
        negative_ttl: float | None = None,
        lock: bool = False,
    ) -> tuple[T, bool]:
        """`get_or_set`, also saying whether the cache answered without waiting for a fetch.

        `(value, True)` when the store (or local tier) held the key; `(value, False)`
        when this caller went through `get_or_set`'s fill (its own fetch, another
        caller's, or another process's under `lock`). Counted once, as a hit or a miss.
        """
        value = await self.get(key, _LOOKUP_MISS)
        if value is not _LOOKUP_MISS:
            return value, True
        # get_or_set reads the key again and counts that miss itself.
        (self._by_key.get(key) or self._stats.family(key)).misses -= 1
        filled = await self.get_or_set(key, fetch, ttl, negative_ttl, lock=lock)
        return filled, False

    def cached(
        self,
        template: str,
        ttl: float | None = DEFAULT,
        *,
        negative_ttl: float | None = None,
        stale_ttl: float | None = None,
        lock: bool = False,
    ) -> Callable[[Callable[P, Awaitable[T]]], CachedFunction[P, T]]:
        """Decorate an async function: its result is cached under `template.format(**args)`.

        `@cache.cached("customer:email:{email}", ttl=1800)` caches `find(email)`.
        The wrapper also has `.key(...)` and `await .invalidate(...)`.
        """
        base, negative, _, _ = self._ttl.fill_args(ttl, negative_ttl, stale_ttl, lock)
        options = {"ttl": base, "negative_ttl": negative, "stale_ttl": stale_ttl, "lock": lock}
        return cached(self, template, options)

    async def _read(self, full: str, counters: Counters) -> tuple[Any, Any, bool, Any]:
        """(value, serialized, stale, raw) from the store; value is MISS when absent or unusable.

        `raw` is the envelope as read (None when absent or unknown): a fill's fence.
        """
        local = self._local
        version = local.version if local is not None else 0
        if self._breaker.open_until and self._skip_store(full, "GET", counters):
            raw = None
        else:
            try:
                raw = await self.kv.get(full, self._read_type)
            except STORE_ERRORS as exc:
                self._failed("get", exc, counters)
                raw = None
            else:
                if self._breaker.failures:
                    self._breaker.success()
        value, serialized, stale = self._decode(raw, full, counters, version)
        return value, serialized, stale, raw

    def _decode(
        self, raw: Any, full: str, counters: Counters, version: int
    ) -> tuple[Any, Any, bool]:
        """Unwrap a stored envelope; keep it in the local tier unless a write came meanwhile."""
        if raw is None:
            return _NOTHING
        head, sep, body = raw.partition(self._sep)
        if sep and head[:1] == self._tombstone:
            return _NOTHING  # invalidated
        try:
            if not sep:
                raise ValueError("no envelope")
            fresh_until = int(head) if head else 0
            value = self._loads(body)
        except _UNREADABLE as exc:
            # Not written by a kvcache Cache with this serializer: a miss, and
            # get_or_set will overwrite it.
            counters.errors += 1
            logger.debug("entry %r is not a kvcache envelope (%s); treated as a miss", full, exc)
            return _NOTHING
        if fresh_until and fresh_until <= self._clock():
            return value, body, True
        local = self._local
        if local is not None and local.version == version:
            local.put(full, value, body, fresh_until)
        return value, body, False

    def _skip_store(self, full: str, op: str, counters: Counters) -> bool:
        """True while the breaker is open: the call is counted in `skipped`, not made.

        The key is checked first, so a bad key raises and never takes the one probe.
        """
        if not self._breaker.open_until:
            return False
        v.check_key(full, op, self.kv.limits)
        if self._breaker.allow():
            return False  # this call is the probe
        counters.skipped += 1
        return True

    def _failed(self, op: str, exc: BaseException, counters: Counters) -> None:
        """A store call failed: count it, tell the breaker, carry on without the store."""
        counters.errors += 1
        self._breaker.failure(op, exc)

    # -- writes ------------------------------------------------------------

    async def set(self, key: str, value: Any, ttl: float | None = DEFAULT) -> None:
        """Store `value` (JSON-serialisable with the default serializer) for `ttl` seconds.

        Leave `ttl` out for the cache's `default_ttl`; None stores without expiry.
        """
        full = self._full_key(key)
        base = self._ttl.base(ttl, "ttl")
        serialized = self.serializer.dumps(value)
        await self._flights.invalidate(full)  # a fill begun before this write must not undo it
        await self._store(full, key, value, serialized, base, 0.0)

    async def _store(
        self,
        full: str,
        key: str,
        value: Any,
        serialized: Any,
        ttl: int | None,
        stale: float,
        fence: Fence | None = None,
    ) -> None:
        """Write an envelope: `set`'s always, a fill's if `fence` holds. Failures are dropped."""
        counters = self._stats.family(key)
        if ttl is None:
            header, store_ttl, fresh_until = "", None, 0
        else:
            ttl = self._ttl.jittered(ttl)
            fresh_until = math.floor(self._clock()) + ttl
            store_ttl = ttl + math.ceil(stale)
            # Without a stale window the store's own expiry is the freshness limit.
            header = str(fresh_until) if stale else ""
        data = (header.encode() if self._binary else header) + self._sep + serialized
        local = self._local
        if local is not None:
            local.drop(full)
        version = local.version if local is not None else 0
        if self._skip_store(full, "PUT", counters):
            v.value_bytes(data, self.kv.limits)
            return
        try:
            if fence is None:
                await self.kv.put(full, data, expiration_ttl=store_ttl)
                kept = True
            else:
                kept = await self._fences.store(full, key, data, store_ttl, fence)
        except STORE_ERRORS as exc:
            self._failed("put", exc, counters)
            kept = False
        else:
            self._breaker.success()
        if not kept:
            if local is not None:
                local.drop(full)  # nor keep a read of it made while it was briefly stored
            return
        counters.sets += 1
        if local is not None and local.version == version:
            local.put(full, value, serialized, fresh_until)

    async def delete(self, key: str) -> None:
        """Invalidate `key` here and in the store, where a tombstone stops older fills."""
        await self.delete_many((key,))

    async def delete_many(self, keys: Iterable[str]) -> int:
        """`delete` of every key, in one store write per 5,000 keys.

        Fails open like `delete`; returns how many keys the store took, so a caller
        that must know (a webhook's invalidation) sees a failed or skipped write.
        """
        return await self._invalidations.delete_many([(self._full_key(k), k) for k in keys])

    async def delete_prefix(self, prefix: str) -> int:
        """Invalidate every key starting with `prefix`, across all pages; returns how many."""
        if not isinstance(prefix, str):
            raise TypeError(f"prefix must be str, not {type(prefix).__name__}")
        return await self._invalidations.delete_prefix(prefix)

    # -- statistics and lifecycle -------------------------------------------

    def stats(self) -> CacheStats:
        """A snapshot of the counters, totals and per key family."""
        return self._stats.snapshot()

    def prometheus_collector(self) -> Any:
        """A prometheus_client collector of this cache's counters (see kvcache.stats)."""
        from .stats import prometheus_collector

        return prometheus_collector(self)

    async def close(self) -> None:
        """Cancel running fetches and refreshes, drop the local tier; the store stays open."""
        await self._flights.cancel_all()
        if self._local is not None:
            self._local.clear()

    @property
    def default_ttl(self) -> int | None:
        """The TTL of entries written without one (after raising to the store minimum)."""
        return self._ttl.default

    @property
    def jitter(self) -> float:
        return self._ttl.jitter

    def __repr__(self) -> str:
        return f"<Cache prefix={self.prefix!r} store={self.kv!r}>"

    # -- helpers -------------------------------------------------------------

    def _full_key(self, key: str) -> str:
        if key.__class__ is not str:
            raise TypeError(f"key must be str, not {type(key).__name__}")
        return self.prefix + key
