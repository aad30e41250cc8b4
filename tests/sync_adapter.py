"""An awaitable face on a `kvcache.sync` store, so async tests drive the sync path unchanged.

Every call goes through `asyncio.to_thread` to the sync store's method: it runs
on a worker thread of the test's running loop (as in a Django or Flask app under
an ASGI server), crosses into the store's private loop and comes back. Nothing
here checks or converts anything; the behaviour under test is the sync store's.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from types import TracebackType
from typing import Any

import kvcache.sync
from kvcache import KVEntry, Limits, ListPage
from kvcache.kv import Clock

__all__ = ["AwaitableSyncStore"]


class AwaitableSyncStore:
    """The async `KVStore` API over a sync store (duck-typed: tests treat it as a KVStore)."""

    def __init__(self, store: kvcache.sync.KVStore) -> None:
        self.sync = store

    @property
    def namespace(self) -> str:
        return self.sync.namespace

    @property
    def limits(self) -> Limits:
        return self.sync.limits

    @property
    def clock(self) -> Clock:
        clock: Clock = self.sync.clock
        return clock

    @property
    def backend(self) -> str:
        return self.sync.backend

    @property
    def atomic(self) -> bool:
        return self.sync.atomic

    @property
    def consistent(self) -> bool:
        return self.sync.consistent

    @property
    def separate_namespaces(self) -> bool:
        return self.sync.separate_namespaces

    @property
    def relaxable(self) -> bool:
        return self.sync.relaxable

    @property
    def same_key_write_interval(self) -> float:
        return self.sync.same_key_write_interval

    async def get(self, key: str, type: str = "text", *, cache_ttl: int | None = None) -> Any:
        return await asyncio.to_thread(self.sync.get, key, type, cache_ttl=cache_ttl)

    async def get_with_metadata(
        self, key: str, type: str = "text", *, cache_ttl: int | None = None
    ) -> KVEntry:
        return await asyncio.to_thread(self.sync.get_with_metadata, key, type, cache_ttl=cache_ttl)

    async def get_many(
        self, keys: Sequence[str], type: str = "text", *, cache_ttl: int | None = None
    ) -> dict[str, Any]:
        return await asyncio.to_thread(self.sync.get_many, keys, type, cache_ttl=cache_ttl)

    async def get_many_with_metadata(
        self, keys: Sequence[str], type: str = "text", *, cache_ttl: int | None = None
    ) -> dict[str, KVEntry | None]:
        call = self.sync.get_many_with_metadata
        return await asyncio.to_thread(call, keys, type, cache_ttl=cache_ttl)

    async def list(
        self, prefix: str | None = None, limit: int | None = 1000, cursor: str | None = None
    ) -> ListPage:
        return await asyncio.to_thread(self.sync.list, prefix, limit, cursor)

    async def put(self, key: str, value: str | bytes, **options: Any) -> None:
        await asyncio.to_thread(self.sync.put, key, value, **options)

    async def delete(self, key: str) -> None:
        await asyncio.to_thread(self.sync.delete, key)

    async def put_many(self, entries: Iterable[Any]) -> None:
        await asyncio.to_thread(self.sync.put_many, entries)

    async def delete_many(self, keys: Iterable[str]) -> None:
        await asyncio.to_thread(self.sync.delete_many, keys)

    async def put_if_absent(self, key: str, value: str | bytes, **options: Any) -> bool:
        return await asyncio.to_thread(self.sync.put_if_absent, key, value, **options)

    async def delete_if_equals(self, key: str, value: str | bytes) -> bool:
        return await asyncio.to_thread(self.sync.delete_if_equals, key, value)

    async def close(self) -> None:
        await asyncio.to_thread(self.sync.close)

    async def __aenter__(self) -> AwaitableSyncStore:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def __repr__(self) -> str:
        return repr(self.sync)
