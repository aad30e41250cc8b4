"""Invalidation-safe fills: the lease rule of Facebook's memcache paper (NSDI 2013).

A fill (`get_or_set` fetching on a miss, or a stale refresh) must not store a value
read before an invalidation of its key, or the invalidation is undone for the
entry's whole TTL. In one process `Flights` voids the running fills an
invalidation covers. Across processes the store itself fences them:

- `delete` writes a *tombstone* (``~<token>|``, read as a miss) instead of
  deleting, and `delete_prefix` buries each listed entry the same way.
- A fill remembers what it read before fetching (nothing, or the exact envelope)
  and stores with `put_if_absent`, after `delete_if_equals` of what it read. Any
  write in between (a tombstone, a `set`, another fill) makes that fail.
- Invalidations also leave *marks* with their writer and time: `delete_prefix`
  on the ':'-segment scope of its prefix before listing, `delete` on the key, in
  the same `put_many` as its tombstone. A fill that stored reads the marks that
  cover its key (one `get_many`) and takes its value back (`delete_if_equals` of
  its own envelope) if another writer invalidated after the fill began. That
  covers what the fences above cannot see: keys a listing missed because nothing
  was stored yet, and a fill that read "nothing" and then wrote in the instant
  another fill had removed a tombstone to replace it. A fill that read an
  envelope skips the key's own mark: its `delete_if_equals` already answers.

Tombstones and marks live `lifetime` seconds; a fill older than `fill_timeout`
stores nothing, so neither can expire under a fill it should stop.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, Final

from ..kv import validation as v
from ..kv.base import KVStore
from ..kv.types import KeyInfo
from ._breaker import STORE_ERRORS

__all__ = [
    "BURY_MAX",
    "DELETED",
    "LEASE",
    "PURGE",
    "TOMBSTONE_METADATA",
    "Fence",
    "Fences",
    "internal_key",
]

#: The cache's own keys: `<prefix>.lease:<key>` (Flights), `<prefix>.purge:<scope>` and
#: `<prefix>.deleted:<key>` (marks).
LEASE: Final = ".lease:"
PURGE: Final = ".purge:"
DELETED: Final = ".deleted:"
#: Listed with every tombstone, so `delete_prefix` neither buries nor counts it again.
TOMBSTONE_METADATA: Final = "kvcache:tombstone"
#: How far two processes' clocks may disagree: a purge mark up to this long before a
#: fill began still takes the fill back.
CLOCK_SKEW: Final = 1.0
#: Purge scopes go this many ':'-segments deep at most (a deeper prefix marks its
#: ancestor), so a fill reads at most MAX_DEPTH + 1 marks in one `get_many`.
MAX_DEPTH: Final = 8
#: What tombstones and marks must outlive beyond the slowest fill allowed to store.
_MARGIN: Final = 10
#: Keys one `bury` takes: a tombstone and a mark each, within `put_many`'s limit.
BURY_MAX: Final = v.BULK_WRITE_MAX // 2
#: Families whose purge-mark names a cache keeps computed (then it starts over).
_MAX_FAMILIES: Final = 10_000


def internal_key(prefix: str, kind: str, name: str, kv: KVStore) -> str:
    """`<prefix><kind><name>`, or a hash of `name` in its place when that is too long."""
    full = prefix + kind + name
    if len(full.encode("utf-8", "surrogatepass")) > kv.limits.max_key_bytes:
        digest = hashlib.blake2b(name.encode("utf-8", "surrogatepass"), digest_size=16)
        full = prefix + kind + "#" + digest.hexdigest()
    return full


def scope_of(prefix: str) -> str:
    """The ':'-segment scope a purge of `prefix` marks: `customer:em` -> `customer:`."""
    head = prefix[: prefix.rfind(":") + 1]
    parts = head.split(":")
    if len(parts) > MAX_DEPTH + 1:
        head = ":".join(parts[:MAX_DEPTH]) + ":"
    return head


def scopes_of(key: str) -> list[str]:
    """Every scope whose purge covers `key`: `a:b:c` -> ["", "a:", "a:b:"]."""
    parts = key.split(":")[:-1][:MAX_DEPTH]
    return [""] + [":".join(parts[: depth + 1]) + ":" for depth in range(len(parts))]


@dataclass(frozen=True, slots=True)
class Fence:
    """What a fill saw before fetching: the raw envelope (None: nothing), and when."""

    seen: Any
    since: float


class Fences:
    """Tombstones, purge marks and the fenced write of one cache.

    `answered` is told as soon as the store answers a fenced write's first call, so a
    circuit breaker's probe closes it before the write's further calls are made.
    """

    def __init__(self, kv: KVStore, prefix: str, answered: Callable[[], None]) -> None:
        self.kv = kv
        self.answered = answered
        self.prefix = prefix
        #: This cache's name on its purge marks: its own purges void its fills in
        #: process, so it skips its own marks.
        self.writer = secrets.token_hex(8)
        self.lifetime = max(kv.limits.min_expiration_ttl, 60)
        self.fill_timeout = float(self.lifetime - _MARGIN)
        self._internal = (prefix + LEASE, prefix + PURGE, prefix + DELETED)
        #: A key's family (all but its last segment) -> the names of its purge marks.
        self._scopes: dict[str, list[str]] = {}

    def tombstone(self) -> str:
        return f"~{secrets.token_hex(8)}|"

    async def bury(self, names: list[tuple[str, str]]) -> None:
        """Invalidate (full key, key) pairs in one `put_many`: each a fresh tombstone,
        whatever was there, and its mark. At most BURY_MAX pairs (two entries each)."""
        limits, tombstone = self.kv.limits, self.tombstone()
        entries: list[dict[str, Any]] = []
        for full, key in names:
            v.check_key(full, "DELETE", limits)
            entries.append(self._mark(internal_key(self.prefix, DELETED, key, self.kv)))
            entries.append(self._tombstone(full, tombstone))
        await self.kv.put_many(entries)

    async def purge(self, prefix: str) -> AsyncIterator[list[str]]:
        """Mark `prefix`'s scope, then bury every live entry under it; yields each batch."""
        kv = self.kv
        full = v.check_prefix(self.prefix + prefix, kv.limits)
        await kv.put_many([self._mark(internal_key(self.prefix, PURGE, scope_of(prefix), kv))])
        tombstone = self.tombstone()
        batch: list[str] = []
        cursor: str | None = None
        while True:
            page = await kv.list(prefix=full, cursor=cursor)
            batch.extend(info.name for info in page.keys if self._live(info))
            if len(batch) >= v.BULK_WRITE_MAX - v.LIST_LIMIT_MAX or page.list_complete:
                if batch:
                    await kv.put_many([self._tombstone(name, tombstone) for name in batch])
                    yield batch
                batch = []
            if page.list_complete:
                return
            cursor = page.cursor

    def _tombstone(self, name: str, tombstone: str) -> dict[str, Any]:
        return {
            "key": name,
            "value": tombstone,
            "expiration_ttl": self.lifetime,
            "metadata": TOMBSTONE_METADATA,
        }

    def _mark(self, name: str) -> dict[str, Any]:
        value = f"{self.writer}|{self.kv.clock()!r}"
        return {"key": name, "value": value, "expiration_ttl": self.lifetime}

    def _live(self, info: KeyInfo) -> bool:
        """A cache entry to bury: not already a tombstone, not a lease or a mark."""
        return info.metadata != TOMBSTONE_METADATA and not info.name.startswith(self._internal)

    async def store(self, full: str, key: str, data: Any, ttl: int | None, fence: Fence) -> bool:
        """Write a fill's envelope unless the key changed since `fence`; True if it stays."""
        kv = self.kv
        if kv.clock() - fence.since > self.fill_timeout:
            return False  # a tombstone written after the fence may have expired by now
        if fence.seen is not None:
            removed = await kv.delete_if_equals(full, fence.seen)
            self.answered()
            if not removed and not await self._replace_lossy(full, fence.seen):
                return False
        stored = await kv.put_if_absent(full, data, expiration_ttl=ttl)
        self.answered()
        if not stored:
            return False
        try:
            purged = await self._invalidated_since(key, fence)
        except STORE_ERRORS:
            await kv.delete_if_equals(full, data)  # cannot tell: do not keep it
            raise
        if purged:
            await kv.delete_if_equals(full, data)
        return not purged

    async def _replace_lossy(self, full: str, seen: Any) -> bool:
        """Remove a foreign entry that was read as text with bytes that are not UTF-8.

        Such an entry reads back lossily (U+FFFD), so its text never equals what is
        stored; compare its exact bytes instead, so the fill overwrites it as it would
        any other entry the cache cannot use.
        """
        if not isinstance(seen, str) or "\ufffd" not in seen:
            return False
        exact = await self.kv.get(full, "bytes")
        if exact is None or exact.decode("utf-8", "replace") != seen:
            return False
        return await self.kv.delete_if_equals(full, exact)

    async def _invalidated_since(self, key: str, fence: Fence) -> bool:
        """Did another writer invalidate `key` at or after the fence (less the skew)?"""
        kv = self.kv
        family = key.rpartition(":")[0]
        scopes = self._scopes.get(family)
        if scopes is None:
            if len(self._scopes) >= _MAX_FAMILIES:
                self._scopes.clear()
            scopes = [internal_key(self.prefix, PURGE, scope, kv) for scope in scopes_of(key)]
            self._scopes[family] = scopes
        names = scopes.copy()
        if fence.seen is None:
            names.append(internal_key(self.prefix, DELETED, key, kv))
        since = fence.since
        marks = await kv.get_many(names)
        for mark in marks.values():
            if mark is None:
                continue
            writer, _, at = mark.rpartition("|")
            if writer == self.writer:
                continue  # our own invalidations voided our fills already
            try:
                when = float(at)
            except ValueError:
                continue  # not a mark any cache wrote (it would stop every fill under it)
            if when >= since - CLOCK_SKEW:
                return True
        return False
