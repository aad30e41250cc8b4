"""Cache statistics: counters the cache updates on every operation, per key family.

A key's family is the key without its last `:`-separated segment, so
`customer:email:a@b.c` counts under `customer:email` (a key with no `:` counts
under ""). The hot path adds one to one attribute of a per-family `Counters`;
totals, hit rates and snapshots are computed only when someone asks.

Export: `CacheStats.as_dict()` for JSON, and `register_prometheus(cache)` or
`prometheus_collector(cache)` for prometheus_client, imported only when called.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any, Final, Protocol

if TYPE_CHECKING:
    from prometheus_client.registry import Collector, CollectorRegistry

__all__ = [
    "OTHER_FAMILY",
    "CacheStats",
    "Counters",
    "FamilyStats",
    "StatsRecorder",
    "family_of",
    "prometheus_collector",
    "register_prometheus",
]

#: Families beyond `max_families` are counted together under this name, so a
#: key scheme with ids in the middle cannot grow the table (or Prometheus) forever.
OTHER_FAMILY = "(other)"


def family_of(key: str) -> str:
    """`customer:email:a@b.c` -> `customer:email`; `plain` -> ``."""
    return key.rpartition(":")[0]


def _counter(help: str, start: float = 0) -> Any:
    """A counter field; `help` is its Prometheus help text."""
    return field(default=start, metadata={"help": help})


@dataclass(slots=True)
class FamilyStats:
    """The counters of one key family: the one list of their names, types and meanings.

    `cache.stats()` hands out copies (changing one changes nothing in the cache);
    the live counters are `Counters`. `hit_rate` counts stale hits as hits.
    """

    hits: int = _counter("Cache lookups answered with a fresh value.")
    misses: int = _counter("Cache lookups that found nothing usable.")
    stale_hits: int = _counter(
        "Lookups answered with an expired-but-recent value while it was refreshed."
    )
    sets: int = _counter("Values written to the store.")
    deletes: int = _counter("Keys deleted from the store.")
    errors: int = _counter("Store calls that failed (the cache failed open).")
    skipped: int = _counter("Store calls not made because the circuit breaker was open.")
    #: Calls of the origin (`fetch`), successful or not; `fetch_errors` of them raised.
    fetches: int = _counter("Calls of the origin function on a miss.")
    fetch_errors: int = _counter("Origin calls that raised.")
    fetch_seconds: float = _counter("Total seconds spent in origin calls.", 0.0)

    @property
    def hit_rate(self) -> float:
        """(hits + stale hits) / lookups, from 0.0 to 1.0; 0.0 before any lookup."""
        served = self.hits + self.stale_hits
        lookups = served + self.misses
        return served / lookups if lookups else 0.0

    def as_dict(self) -> dict[str, Any]:
        out = {name: getattr(self, name) for name in _FIELDS}
        out["hit_rate"] = self.hit_rate
        return out

    @staticmethod
    def of(counters: FamilyStats) -> FamilyStats:
        """A copy of `counters` (live or not) as a plain snapshot."""
        return FamilyStats(*[getattr(counters, name) for name in _FIELDS])


#: The counter names in declaration order and their help texts: derived, never retyped.
_FIELDS: Final = tuple(counter.name for counter in fields(FamilyStats))
_HELP: Final = {counter.name: counter.metadata["help"] for counter in fields(FamilyStats)}


class Counters(FamilyStats):
    """The live counters of one family; only the cache writes them (plain slot attributes)."""

    __slots__ = ()


@dataclass(slots=True)
class CacheStats(FamilyStats):
    """`cache.stats()`: totals over all families plus `by_family`."""

    by_family: dict[str, FamilyStats] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON-ready data: the totals, `hit_rate` and `by_family`."""
        out = FamilyStats.as_dict(self)
        out["by_family"] = {name: stats.as_dict() for name, stats in self.by_family.items()}
        return out


class StatsRecorder:
    """Per-family `Counters`, created on first use and capped at `max_families`.

    `family` maps a key to its family name (default `family_of`); a key scheme
    with a tenant or id before the family (`shop:{shop}:customer:email:...`)
    passes its own, so no family name carries the tenant.
    """

    def __init__(
        self,
        *,
        max_families: int = 1000,
        max_keys: int = 10_000,
        family: Callable[[str], str] | None = None,
    ) -> None:
        self.max_families = max_families
        self.max_keys = max_keys
        self._family_of = family if family is not None else family_of
        self._families: dict[str, Counters] = {}
        #: key -> its family's counters: the hot path's shortcut
        #: (`by_key.get(key) or family(key)`), emptied whenever it reaches `max_keys`.
        self.by_key: dict[str, Counters] = {}

    def family(self, key: str) -> Counters:
        """The counters a key (without the cache prefix) counts under."""
        counters = self.by_key.get(key)
        if counters is None:
            name = self._family_of(key)
            counters = self._families.get(name)
            if counters is None:
                counters = self._new_family(name)
            if len(self.by_key) >= self.max_keys:
                self.by_key.clear()
            self.by_key[key] = counters
        return counters

    def _new_family(self, name: str) -> Counters:
        if len(self._families) >= self.max_families:
            name = OTHER_FAMILY
            existing = self._families.get(name)
            if existing is not None:
                return existing
        counters = self._families[name] = Counters()
        return counters

    def snapshot(self) -> CacheStats:
        by_family = {name: FamilyStats.of(c) for name, c in sorted(self._families.items())}
        families = list(by_family.values())
        stats = CacheStats(by_family=by_family)
        for name in _FIELDS:  # each total starts from the field's zero (0 or 0.0)
            setattr(stats, name, sum([getattr(c, name) for c in families], getattr(stats, name)))
        return stats

    def reset(self) -> None:
        self._families.clear()
        self.by_key.clear()


class _HasStats(Protocol):
    def stats(self) -> CacheStats: ...


def prometheus_collector(caches: _HasStats | Mapping[str, _HasStats]) -> Collector:
    """A prometheus_client collector of caches' counters, labelled by cache and family.

    Give one cache (labelled `cache=""`) or a mapping name -> cache: one
    collector serves several caches, since a registry refuses two collectors
    with the same metric names. Metric names are `kvcache_cache_<counter>_total`,
    for example `kvcache_cache_hits_total{cache="",family="customer:email"}`.
    """
    named = dict(caches) if isinstance(caches, Mapping) else {"": caches}
    from prometheus_client.core import CounterMetricFamily
    from prometheus_client.registry import Collector

    def metric(counter: str) -> CounterMetricFamily:
        return CounterMetricFamily(
            f"kvcache_cache_{counter}", _HELP[counter], labels=["cache", "family"]
        )

    class CacheCollector(Collector):
        def describe(self) -> Iterator[CounterMetricFamily]:
            for counter in _FIELDS:
                yield metric(counter)

        def collect(self) -> Iterator[CounterMetricFamily]:
            snapshots = {name: cache.stats().by_family for name, cache in named.items()}
            for counter in _FIELDS:
                family_metric = metric(counter)
                for name, by_family in snapshots.items():
                    for family, stats in by_family.items():
                        family_metric.add_metric([name, family], getattr(stats, counter))
                yield family_metric

    return CacheCollector()


def register_prometheus(
    caches: _HasStats | Mapping[str, _HasStats], registry: CollectorRegistry | None = None
) -> Collector:
    """Register a collector for the cache(s) on `registry` (default: the global one)."""
    from prometheus_client import REGISTRY

    collector = prometheus_collector(caches)
    (REGISTRY if registry is None else registry).register(collector)
    return collector
