"""`kvcache.sync.Cache`: `kvcache.Cache` without `await`, over a sync store.

The sync cache holds an async `kvcache.Cache` over the sync store's own async
store and runs each call on that store's loop, so hits, TTLs, the envelope,
single-flight, the local tier, failing open and statistics are the async
cache's, rule for rule. What the facade adds is where user code runs: a plain
fetch (or decorated function) runs on the thread that asked for the value,
never on the loop; 50 threads missing one key still call it once, on the
thread whose miss started the fill, and share its result. An `async def`
fetch is accepted too and is awaited on the store's loop.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any, Generic, ParamSpec, TypeVar, overload

from .. import Cache as AsyncCache
from .. import CacheStats, CircuitBreaker, Serializer
from ..cache import DEFAULT, JSON
from ..cache._ttl import CALLER_SITE, caller_site
from ..cache.decorators import CachedFunction as AsyncCachedFunction
from ._portal import on_caller
from ._store import KVStore, core_of

__all__ = ["Cache", "CachedFunction"]

T = TypeVar("T")
R = TypeVar("R")
P = ParamSpec("P")


async def _at_site(site: tuple[str, int], aw: Awaitable[T]) -> T:
    """Await `aw` with warnings (CacheTTLWarning) placed at the caller's line, not the loop's."""
    CALLER_SITE.set(site)
    return await aw


async def _invoke(fn: Callable[[], T]) -> T:
    """Call a plain function on the loop thread, where the state it reads is written."""
    return fn()


class Cache:
    """A cache over a `kvcache.sync` store: `get`, `set`, `delete`, `get_or_set`, `cached`.

    The options and their meaning are `kvcache.Cache`'s (see docs/cache.md). The
    cache borrows `kv`: `close()` leaves it open. Thread-safe; made over one store,
    it shares that store's loop thread with every other cache and idempotency
    object over the store.
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
        store, self._portal = core_of(kv, "Cache")
        self.kv = kv
        self._cache = AsyncCache(
            store,
            default_ttl=default_ttl,
            prefix=prefix,
            serializer=serializer,
            local_ttl=local_ttl,
            local_maxsize=local_maxsize,
            jitter=jitter,
            lock_timeout=lock_timeout,
            breaker=breaker,
            family=family,
        )

    # -- reads ---------------------------------------------------------------------

    def get(self, key: str, default: Any = None) -> Any:
        """The cached value, or `default` on a miss. A cached None, 0, "" or [] is a hit."""
        return self._portal.run(self._cache.get(key, default))

    @overload
    def get_or_set(
        self,
        key: str,
        fetch: Callable[[], Awaitable[T]],
        ttl: float | None = ...,
        negative_ttl: float | None = ...,
        stale_ttl: float | None = ...,
        lock: bool = ...,
    ) -> T: ...

    @overload
    def get_or_set(
        self,
        key: str,
        fetch: Callable[[], T],
        ttl: float | None = ...,
        negative_ttl: float | None = ...,
        stale_ttl: float | None = ...,
        lock: bool = ...,
    ) -> T: ...

    def get_or_set(
        self,
        key: str,
        fetch: Callable[[], Any],
        ttl: float | None = DEFAULT,
        negative_ttl: float | None = None,
        stale_ttl: float | None = None,
        lock: bool = False,
    ) -> Any:
        """The cached value, or `fetch()` stored for `ttl` (once per key at a time).

        As `kvcache.Cache.get_or_set`. A plain `fetch` runs on this thread; a
        background refresh (`stale_ttl`), which outlives the call, runs it on a
        worker thread. An `async def` fetch is awaited on the store's loop.
        """
        aw = self._cache.get_or_set(key, on_caller(fetch), ttl, negative_ttl, stale_ttl, lock)
        return self._portal.run(_at_site(caller_site(), aw))

    def cached(
        self,
        template: str,
        ttl: float | None = DEFAULT,
        *,
        negative_ttl: float | None = None,
        stale_ttl: float | None = None,
        lock: bool = False,
    ) -> _Decorator:
        """Decorate a function: its result is cached under `template.format(**args)`.

        As `kvcache.Cache.cached`, for plain functions (an `async def` function
        becomes a sync one whose coroutine runs on the store's loop). The wrapper
        also has `.key(...)` and `.invalidate(...)`.
        """
        decorate = self._cache.cached(
            template, ttl, negative_ttl=negative_ttl, stale_ttl=stale_ttl, lock=lock
        )
        return _Decorator(self, decorate)

    # -- writes --------------------------------------------------------------------

    def set(self, key: str, value: Any, ttl: float | None = DEFAULT) -> None:
        """Store `value` for `ttl` seconds (left out: `default_ttl`; None: no expiry)."""
        self._portal.run(_at_site(caller_site(), self._cache.set(key, value, ttl)))

    def delete(self, key: str) -> None:
        """Remove `key` from the store and this cache's local tier."""
        self._portal.run(self._cache.delete(key))

    def delete_prefix(self, prefix: str) -> int:
        """Delete every key starting with `prefix`, across all pages; returns how many."""
        return self._portal.run(self._cache.delete_prefix(prefix))

    # -- statistics and lifecycle ------------------------------------------------------

    def stats(self) -> CacheStats:
        """A snapshot of the counters, totals and per key family (taken on the loop)."""
        return self._portal.run(_invoke(self._cache.stats))

    def prometheus_collector(self) -> Any:
        """A prometheus_client collector of this cache's counters (see kvcache.cache.stats)."""
        from ..cache.stats import prometheus_collector

        return prometheus_collector(self)

    def close(self) -> None:
        """Cancel running fetches and refreshes, drop the local tier; the store stays open."""
        self._portal.run(self._cache.close())

    @property
    def prefix(self) -> str:
        return self._cache.prefix

    @property
    def serializer(self) -> Serializer:
        return self._cache.serializer

    @property
    def lock_timeout(self) -> float:
        return self._cache.lock_timeout

    @property
    def default_ttl(self) -> int | None:
        """The TTL of entries written without one (after raising to the store minimum)."""
        return self._cache.default_ttl

    @property
    def jitter(self) -> float:
        return self._cache.jitter

    def __repr__(self) -> str:
        return f"<kvcache.sync.Cache prefix={self.prefix!r} store={self.kv!r}>"


class _Decorator:
    """What `Cache.cached(...)` returns: apply it to a function."""

    def __init__(
        self, cache: Cache, decorate: Callable[[Callable[..., Any]], AsyncCachedFunction[Any, Any]]
    ) -> None:
        self._cache = cache
        self._decorate = decorate

    @overload
    def __call__(self, fn: Callable[P, Awaitable[R]]) -> CachedFunction[P, R]: ...

    @overload
    def __call__(self, fn: Callable[P, R]) -> CachedFunction[P, R]: ...

    def __call__(self, fn: Callable[P, Any]) -> CachedFunction[P, Any]:
        return CachedFunction(self._cache, self._decorate(on_caller(fn)), fn)


class CachedFunction(Generic[P, R]):
    """A function decorated by `kvcache.sync.Cache.cached`; also `.key()` and `.invalidate()`.

    Key building, template checks and the get_or_set options are the async
    decorator's (`kvcache.cache.decorators.CachedFunction`), which this wraps.
    """

    # Copied from the function by functools.update_wrapper.
    __name__: str
    __qualname__: str
    __wrapped__: Callable[P, R]

    def __init__(
        self, cache: Cache, inner: AsyncCachedFunction[P, Any], fn: Callable[P, Any]
    ) -> None:
        self._portal = cache._portal
        self._inner = inner
        self.template = inner.template
        functools.update_wrapper(self, fn)

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        result: R = self._portal.run(self._inner(*args, **kwargs))
        return result

    def key(self, *args: P.args, **kwargs: P.kwargs) -> str:
        """The cache key of a call with these arguments (without the cache's prefix)."""
        return self._inner.key(*args, **kwargs)

    def invalidate(self, *args: P.args, **kwargs: P.kwargs) -> None:
        """Delete the cached result of a call with these arguments."""
        self._portal.run(self._inner.invalidate(*args, **kwargs))

    def __get__(self, instance: object, owner: type | None = None) -> Any:
        """Decorating a method: bind the instance, as a plain function would."""
        if instance is None:
            return self
        return _BoundCached(self, instance)

    def __repr__(self) -> str:
        return f"<kvcache.sync cached {self.template!r} of {self.__wrapped__!r}>"


class _BoundCached:
    """A sync `CachedFunction` bound to an instance (`obj.method(...)`)."""

    def __init__(self, func: CachedFunction[Any, Any], instance: object) -> None:
        self._func = func
        self._instance = instance
        functools.update_wrapper(self, func)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._func(self._instance, *args, **kwargs)

    def key(self, *args: Any, **kwargs: Any) -> str:
        return self._func.key(self._instance, *args, **kwargs)

    def invalidate(self, *args: Any, **kwargs: Any) -> None:
        self._func.invalidate(self._instance, *args, **kwargs)
