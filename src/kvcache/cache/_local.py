"""The in-process tier: a bounded LRU of recent reads in front of the store.

The analogue of Workers KV's `cacheTtl`: a value read from the store is kept
here for `ttl` seconds (never past its own freshness), so hot keys cost a dict
lookup. Only this process's writes invalidate it; other processes' writes show
up when the local copy expires.

Values are returned as fresh objects, exactly as from the store: immutable
values are kept as they are, anything else as its serialized form, deserialized
on every hit, so a caller mutating a result cannot change what the next gets.
"""

from __future__ import annotations

import enum
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Final, Literal

__all__ = ["IMMUTABLE", "MISS", "LocalTier", "Miss"]


class Miss(enum.Enum):
    """The type of `MISS`: nothing found, as distinct from a cached None."""

    MISS = enum.auto()

    def __repr__(self) -> str:
        return "<MISS>"


MISS: Final = Miss.MISS
MissType = Literal[Miss.MISS]

#: Types whose values can be shared between callers without copying.
IMMUTABLE: Final = frozenset({str, int, float, bool, bytes, type(None)})

# (expires_at, value or serialized form, True when the second item is serialized)
_Entry = tuple[float, Any, bool]


class LocalTier:
    """An LRU mapping of full keys to recent values, bounded by `maxsize`."""

    def __init__(
        self,
        *,
        ttl: float,
        maxsize: int,
        clock: Callable[[], float],
        loads: Callable[[Any], Any],
    ) -> None:
        self.ttl = ttl
        self.maxsize = maxsize
        self._clock = clock
        self._loads = loads
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        #: Bumped by every invalidation. A reader notes it before awaiting the
        #: store and keeps what it read only if it did not change meanwhile, so
        #: a slow read can never put back a value that a write replaced.
        self.version = 0

    def get(self, key: str) -> Any:
        """A fresh copy of the value, or MISS when absent or expired."""
        entry = self._entries.get(key)
        if entry is None:
            return MISS
        if entry[0] <= self._clock():
            del self._entries[key]
            return MISS
        self._entries.move_to_end(key)
        if entry[2]:
            return self._loads(entry[1])
        return entry[1]

    def put(self, key: str, value: Any, serialized: Any, fresh_until: float) -> None:
        """Keep `value` for `ttl` seconds, or until `fresh_until` (0: no limit) if sooner."""
        expires = self._clock() + self.ttl
        if fresh_until and fresh_until < expires:
            expires = fresh_until
        entries = self._entries
        if value.__class__ in IMMUTABLE:
            entries[key] = (expires, value, False)
        else:
            entries[key] = (expires, serialized, True)
        entries.move_to_end(key)
        if len(entries) > self.maxsize:
            entries.popitem(last=False)

    def drop(self, key: str) -> None:
        self.version += 1
        self._entries.pop(key, None)

    def drop_prefix(self, prefix: str) -> None:
        self.version += 1
        for key in [k for k in self._entries if k.startswith(prefix)]:
            del self._entries[key]

    def clear(self) -> None:
        self.version += 1
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)
