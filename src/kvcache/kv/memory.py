"""An in-process store: tests and single-process apps.

A dict holds the rows and a sorted list of names serves listings. Every method
runs without awaiting anything, so each operation is atomic within the event loop.
"""

from __future__ import annotations

import time
from bisect import bisect_left, bisect_right, insort
from typing import ClassVar

from .base import Clock, KVStore
from .errors import KVBackendError
from .limits import Limits
from .meter import Meter
from .types import KeyInfo, Record
from .validation import decode_metadata

__all__ = ["MemoryStore"]

_Row = tuple[bytes, int | None, str | None]


class MemoryStore(KVStore):
    """Workers KV semantics in a dict; data lives as long as the object."""

    backend: ClassVar[str] = "memory"
    atomic: ClassVar[bool] = True

    def __init__(
        self,
        *,
        namespace: str = "default",
        limits: Limits | None = None,
        clock: Clock = time.time,
        meter: Meter | None = None,
    ) -> None:
        super().__init__(namespace=namespace, limits=limits, clock=clock, meter=meter)
        self._rows: dict[str, _Row] = {}
        self._names: list[str] = []
        self._closed = False

    def _check_open(self) -> None:
        if self._closed:
            raise KVBackendError("store is closed", backend=self.backend)

    def _live(self, key: str) -> _Row | None:
        self._check_open()
        row = self._rows.get(key)
        if row is None:
            return None
        expires = row[1]
        if expires is not None and expires <= self.clock():
            self._remove(key)
            return None
        return row

    def _remove(self, key: str) -> bool:
        if self._rows.pop(key, None) is None:
            return False
        index = bisect_left(self._names, key)
        del self._names[index]
        return True

    def _store(self, record: Record) -> None:
        if record.key not in self._rows:
            insort(self._names, record.key)
        self._rows[record.key] = (record.value, record.expiration, record.metadata)

    async def _get_value(self, key: str) -> bytes | None:
        row = self._live(key)
        return None if row is None else row[0]

    async def _get_entry(self, key: str) -> tuple[bytes, str | None] | None:
        row = self._live(key)
        return None if row is None else (row[0], row[2])

    async def _get_entries(self, keys: list[str]) -> dict[str, tuple[bytes, str | None]]:
        found: dict[str, tuple[bytes, str | None]] = {}
        for key in keys:
            row = self._live(key)
            if row is not None:
                found[key] = (row[0], row[2])
        return found

    async def _list(self, prefix: str, start_after: str, limit: int) -> tuple[list[KeyInfo], bool]:
        self._check_open()
        names = self._names
        start = max(prefix, start_after)
        index = bisect_right(names, start) if start == start_after else bisect_left(names, start)
        now = self.clock()
        keys: list[KeyInfo] = []
        expired: list[str] = []
        more = False
        while index < len(names):
            name = names[index]
            index += 1
            if not name.startswith(prefix):
                break
            _, expires, meta = self._rows[name]
            if expires is not None and expires <= now:
                expired.append(name)
            elif len(keys) == limit:
                more = True
                break
            else:
                keys.append(KeyInfo(name, expires, decode_metadata(meta, name)))
        for name in expired:
            self._remove(name)
        return keys, more

    async def _put(self, record: Record) -> None:
        self._check_open()
        self._store(record)

    async def _put_many(self, records: list[Record]) -> None:
        self._check_open()
        for record in records:
            self._store(record)

    async def _delete(self, key: str) -> None:
        self._check_open()
        self._remove(key)

    async def _delete_many(self, keys: list[str]) -> None:
        self._check_open()
        for key in keys:
            self._remove(key)

    async def _put_if_absent(self, record: Record) -> bool:
        if self._live(record.key) is not None:
            return False
        self._store(record)
        return True

    async def _delete_if_equals(self, key: str, value: bytes) -> bool:
        row = self._live(key)
        if row is None or row[0] != value:
            return False
        return self._remove(key)

    async def _stored_bytes(self) -> int | None:
        self._check_open()
        now = self.clock()
        return sum(
            len(key.encode()) + len(value) + (0 if meta is None else len(meta.encode()))
            for key, (value, expires, meta) in self._rows.items()
            if expires is None or expires > now
        )

    async def _close(self) -> None:
        self._closed = True
        self._rows.clear()
        self._names.clear()


async def from_url(url: str, *, namespace: str, limits: Limits | None, clock: Clock) -> MemoryStore:
    """memory:// -- a new, empty store private to this object."""
    return MemoryStore(namespace=namespace, limits=limits, clock=clock)
