"""The sync store: every `KVStore` method without `await`, run on the store's own loop.

Each method hands the async store's own coroutine to the store's `Portal`, so
validation, limits, expiry and error wording are the async core's, unchanged;
exceptions arrive with the same types (`KVValidationError`, `KVBackendError`,
`TypeError`, ...). The store owns its portal and closes it with itself.
"""

from __future__ import annotations

import time
import warnings
import weakref
from collections.abc import Iterable, Sequence
from types import TracebackType
from typing import Any

from .. import KVBackendError, KVEntry, Limits, ListPage
from .. import KVStore as AsyncKVStore
from .. import open_kv as async_open_kv
from ..kv import Clock, Meter
from ._portal import Portal, refuse_running_loop

__all__ = ["KVStore", "core_of", "open_kv"]


def _unclosed(portal: Portal, store: AsyncKVStore, name: str) -> None:
    """A store dropped without `close()`: warn as open files do, and free the loop thread."""
    if portal.forked:
        return  # the parent's to close
    try:
        portal.run(store.close())
        portal.close()
    except Exception:  # on a thread that runs a loop (a finalizer runs anywhere): no waiting
        portal.stop_soon()
    warnings.warn(f"unclosed {name}; call close() or use `with`", ResourceWarning, stacklevel=1)


class KVStore:
    """A Workers-KV namespace for sync code; open it with `kvcache.sync.open_kv`.

    Thread-safe: any number of threads may call it at once (the calls run one
    after another on the store's loop, as concurrent tasks do in async code).
    Not for threads that run an event loop: there, use the async store.
    """

    def __init__(self, store: AsyncKVStore, portal: Portal) -> None:
        if not isinstance(store, AsyncKVStore) or not isinstance(portal, Portal):
            raise TypeError("open a sync store with kvcache.sync.open_kv(...)")
        self._store = store
        self._portal = portal
        self._finalizer = weakref.finalize(self, _unclosed, portal, store, repr(self))

    # -- what the store is -----------------------------------------------------

    @property
    def namespace(self) -> str:
        return self._store.namespace

    @property
    def limits(self) -> Limits:
        return self._store.limits

    @property
    def clock(self) -> Clock:
        return self._store.clock

    @property
    def backend(self) -> str:
        """Backend name used in errors and URLs ("sqlite", "redis", "memory", ...)."""
        return self._store.backend

    @property
    def atomic(self) -> bool:
        """True when put_if_absent / delete_if_equals are atomic across processes."""
        return self._store.atomic

    @property
    def consistent(self) -> bool:
        """True when a write is visible at once to every other store on the same URL."""
        return self._store.consistent

    @property
    def separate_namespaces(self) -> bool:
        """True when `namespace=` selects its own keyspace on one URL."""
        return self._store.separate_namespaces

    @property
    def relaxable(self) -> bool:
        """True when `Limits.relaxed()` can apply (no server enforces Workers KV's limits)."""
        return self._store.relaxable

    @property
    def same_key_write_interval(self) -> float:
        """Seconds to leave between two writes of one key (Workers KV: 1; else 0)."""
        return self._store.same_key_write_interval

    @property
    def closed(self) -> bool:
        return self._portal.closed

    # -- reads -------------------------------------------------------------------

    def get(self, key: str, type: str = "text", *, cache_ttl: int | None = None) -> Any:
        """The value as str ("text"), parsed JSON ("json") or bytes; None if absent or expired."""
        return self._portal.run(self._store.get(key, type, cache_ttl=cache_ttl))

    def get_with_metadata(
        self, key: str, type: str = "text", *, cache_ttl: int | None = None
    ) -> KVEntry:
        """Value and metadata together; `KVEntry(None, None)` if absent or expired."""
        return self._portal.run(self._store.get_with_metadata(key, type, cache_ttl=cache_ttl))

    def get_many(
        self, keys: Sequence[str], type: str = "text", *, cache_ttl: int | None = None
    ) -> dict[str, Any]:
        """Up to 100 keys in one call; every requested key maps to its value or None."""
        return self._portal.run(self._store.get_many(keys, type, cache_ttl=cache_ttl))

    def get_many_with_metadata(
        self, keys: Sequence[str], type: str = "text", *, cache_ttl: int | None = None
    ) -> dict[str, KVEntry | None]:
        """Bulk get with metadata; a missing key maps to None, not to an empty entry."""
        aw = self._store.get_many_with_metadata(keys, type, cache_ttl=cache_ttl)
        return self._portal.run(aw)

    def list(
        self, prefix: str | None = None, limit: int | None = 1000, cursor: str | None = None
    ) -> ListPage:
        """One page of keys in UTF-8 byte order; follow `cursor` until `list_complete`."""
        return self._portal.run(self._store.list(prefix, limit, cursor))

    # -- writes ------------------------------------------------------------------

    def put(
        self,
        key: str,
        value: str | bytes,
        *,
        expiration: int | None = None,
        expiration_ttl: int | None = None,
        metadata: Any = None,
    ) -> None:
        """Replace the key's value, expiry and metadata together."""
        aw = self._store.put(
            key, value, expiration=expiration, expiration_ttl=expiration_ttl, metadata=metadata
        )
        self._portal.run(aw)

    def delete(self, key: str) -> None:
        """Remove the key; an absent key is not an error."""
        self._portal.run(self._store.delete(key))

    def put_many(self, entries: Iterable[Any]) -> None:
        """Write up to 10,000 wrangler-style entries in one all-or-nothing step."""
        self._portal.run(self._store.put_many(entries))

    def delete_many(self, keys: Iterable[str]) -> None:
        """Delete up to 10,000 keys in one all-or-nothing step."""
        self._portal.run(self._store.delete_many(keys))

    def put_if_absent(
        self,
        key: str,
        value: str | bytes,
        *,
        expiration: int | None = None,
        expiration_ttl: int | None = None,
        metadata: Any = None,
    ) -> bool:
        """Write only if no live value exists; True if this call wrote it."""
        aw = self._store.put_if_absent(
            key, value, expiration=expiration, expiration_ttl=expiration_ttl, metadata=metadata
        )
        return self._portal.run(aw)

    def delete_if_equals(self, key: str, value: str | bytes) -> bool:
        """Delete only if the live value equals `value` byte for byte; True if deleted."""
        return self._portal.run(self._store.delete_if_equals(key, value))

    # -- lifecycle -----------------------------------------------------------------

    def close(self) -> None:
        """Close the store, then its loop thread. Idempotent.

        Calls still running on other threads end with the closed store's
        `KVBackendError`; later calls behave as on a closed async store.
        """
        portal = self._portal
        if portal.forked:
            self._finalizer.detach()
            return  # a forked child owns nothing here: the parent closes it
        if portal.closed:
            portal.run(self._store.close())  # closing again, as the async store allows
            return
        try:
            portal.run(self._store.close())
        finally:
            portal.close(in_flight_error=self._closed_error)
        self._finalizer.detach()  # only now: a refused close (RunningLoopError) still warns

    def _closed_error(self) -> KVBackendError:
        return KVBackendError("store is closed", backend=self._store.backend)

    def __enter__(self) -> KVStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<kvcache.sync.KVStore {self._store!r}>"


def core_of(kv: object, user: str) -> tuple[AsyncKVStore, Portal]:
    """The async store and the portal behind a sync store, for a sync `user` built over it."""
    if not isinstance(kv, KVStore):
        raise TypeError(
            f"kv must be a store from kvcache.sync.open_kv (for an async store use "
            f"kvcache.{user}), not {type(kv).__name__}"
        )
    return kv._store, kv._portal


async def _open(
    url: str | None,
    namespace: str,
    limits: Limits | None,
    clock: Clock,
    meter: Meter | None,
    options: dict[str, Any],
) -> AsyncKVStore:
    return await async_open_kv(
        url, namespace=namespace, limits=limits, clock=clock, meter=meter, **options
    )


def open_kv(
    url: str | None = None,
    *,
    namespace: str = "default",
    limits: Limits | None = None,
    clock: Clock = time.time,
    meter: Meter | None = None,
    **options: Any,
) -> KVStore:
    """Open a store by URL for sync code; the arguments are `kvcache.open_kv`'s.

    Returns the open store (`kv = kvcache.sync.open_kv(...)`), which is also a
    context manager (`with kvcache.sync.open_kv(...) as kv:` closes it). Each
    store runs its own event-loop thread until it is closed.
    """
    refuse_running_loop()
    portal = Portal()
    try:
        store = portal.run(_open(url, namespace, limits, clock, meter, options))
    except BaseException:
        portal.close()
        raise
    return KVStore(store, portal)
