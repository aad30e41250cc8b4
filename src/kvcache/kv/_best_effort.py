"""What Workers KV stores do one key at a time: conditional writes and some bulk reads.

Workers KV (over REST or its binding) has no conditional write: put_if_absent and
delete_if_equals read, then write, so two clients racing on one key can both win.
Such stores keep `atomic = False`, and `Idempotency` asks for `best_effort=True`
before it uses them. Reads the server cannot batch (bytes over REST, any bulk read
on an old binding) are single reads, a few in flight at once.
"""

from __future__ import annotations

import asyncio
from abc import abstractmethod

from .types import Record

__all__ = ["SingleKeyFallbacks"]


class SingleKeyFallbacks:
    """The conditional primitives as a read followed by a write (not atomic), and single reads."""

    #: How many single reads one call keeps in flight.
    single_reads_in_flight = 8

    @abstractmethod
    async def _get_value(self, key: str) -> bytes | None: ...

    @abstractmethod
    async def _get_entry(self, key: str) -> tuple[bytes, str | None] | None: ...

    @abstractmethod
    async def _put(self, record: Record) -> None: ...

    @abstractmethod
    async def _delete(self, key: str) -> None: ...

    async def _put_if_absent(self, record: Record) -> bool:
        if await self._get_value(record.key) is not None:
            return False
        await self._put(record)
        return True

    async def _delete_if_equals(self, key: str, value: bytes) -> bool:
        if await self._get_value(key) != value:
            return False
        await self._delete(key)
        return True

    async def _single_reads(
        self, keys: list[str], metadata: bool
    ) -> dict[str, tuple[bytes, str | None]]:
        """Values (and metadata) of the keys, read one by one; absent keys left out."""
        gate = asyncio.Semaphore(self.single_reads_in_flight)

        async def one(key: str) -> tuple[bytes, str | None] | None:
            async with gate:
                if metadata:
                    return await self._get_entry(key)
                value = await self._get_value(key)
                return None if value is None else (value, None)

        results = await asyncio.gather(*(one(key) for key in keys))
        return {key: found for key, found in zip(keys, results, strict=True) if found is not None}
