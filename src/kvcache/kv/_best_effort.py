"""put_if_absent and delete_if_equals for stores that cannot make them atomic.

Workers KV (over REST or its binding) has no conditional write: these read, then
write, so two clients racing on one key can both win. Such stores keep
`atomic = False`, and `Idempotency` asks for `best_effort=True` before it uses them.
"""

from __future__ import annotations

from abc import abstractmethod

from .types import Record

__all__ = ["BestEffortConditionals"]


class BestEffortConditionals:
    """The conditional primitives as a read followed by a write (not atomic)."""

    @abstractmethod
    async def _get_value(self, key: str) -> bytes | None: ...

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
