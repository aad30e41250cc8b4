"""Invalidations: what `Cache.delete`, `delete_many` and `delete_prefix` do.

Each drops the keys from the local tier and voids the fills in flight first, so
nothing this process holds outlives the call; then it writes tombstones (see
`_fence`) so that a fill begun earlier anywhere cannot store. Like every cache
call they fail open: a store failure is counted in the key's family and told to
the breaker, and while the breaker is open the call is skipped and counted.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ..kv import validation as v
from ..kv.base import KVStore
from ._breaker import STORE_ERRORS, CircuitBreaker
from ._fence import BURY_MAX, Fences
from ._flight import Flights
from ._local import LocalTier
from .stats import Counters, StatsRecorder

__all__ = ["Invalidations"]


@dataclass(frozen=True, slots=True)
class Invalidations:
    """One cache's invalidation paths, over the parts the `Cache` owns."""

    kv: KVStore
    prefix: str
    local: LocalTier | None
    flights: Flights
    fences: Fences
    breaker: CircuitBreaker
    stats: StatsRecorder
    #: The cache's own handling of a failed store call: count it, tell the breaker.
    failed: Callable[[str, BaseException, Counters], None]

    async def delete_many(self, names: list[tuple[str, str]]) -> int:
        """Invalidate each (store key, cache key); returns how many the store took."""
        for full, _ in names:
            if self.local is not None:
                self.local.drop(full)
            await self.flights.invalidate(full)
        taken = 0
        for start in range(0, len(names), BURY_MAX):
            batch = names[start : start + BURY_MAX]
            counters = [self.stats.family(key) for _, key in batch]
            if self.breaker.open_until:
                for full, _ in batch:
                    v.check_key(full, "DELETE", self.kv.limits)
                if not self.breaker.allow():  # else this batch is the probe
                    for family in counters:
                        family.skipped += 1
                    continue
            try:
                await self.fences.bury(batch)
            except STORE_ERRORS as exc:
                for family in counters[1:]:
                    family.errors += 1
                self.failed("delete", exc, counters[0])
                continue
            self.breaker.success()
            for family in counters:
                family.deletes += 1
            taken += len(batch)
        return taken

    async def delete_prefix(self, prefix: str) -> int:
        """Invalidate every key starting with `prefix`, across all pages; returns how many."""
        full = self.prefix + prefix
        if self.local is not None:
            self.local.drop_prefix(full)
        await self.flights.invalidate(full, prefix=True)
        counters = self.stats.family(prefix)
        if self.breaker.open_until:
            v.check_prefix(full, self.kv.limits)
            if not self.breaker.allow():
                counters.skipped += 1
                return 0
        removed = 0
        skip = len(self.prefix)
        try:
            async for names in self.fences.purge(prefix):
                for name in names:
                    self.stats.family(name[skip:]).deletes += 1
                removed += len(names)
        except STORE_ERRORS as exc:
            self.failed("delete_prefix", exc, counters)
            return removed
        self.breaker.success()
        return removed
