"""Prometheus metrics of the service, summed over every worker process.

    kvcache_webhooks_total{topic,outcome}
    kvcache_webhook_duration_seconds{topic}          (a histogram)
    kvcache_cache_<counter>_total{cache,family}      (the Cache's own counters)

Under `kvcache serve` each worker writes its values to prometheus_client's
multiprocess files (PROMETHEUS_MULTIPROC_DIR, set before the workers start) and
any worker answers with the sum. The cache keeps its counters in process, so
each worker adds the growth since its last push to the Prometheus counters
(`push_cache`, a few times a second and before every read): `/api/cache/stats`
is then computed from the same summed samples.

Given the service's `History`, the same growth goes into the per-minute history
the dashboard charts (summed over workers in the app database):

    cache{cache,family,counter}      counter in HISTORY_COUNTERS
    webhooks{topic,outcome}          deliveries answered
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client import values as prometheus_values
from prometheus_client.multiprocess import MultiProcessCollector

from .. import CacheStats, FamilyStats
from ..shopify.history import History

__all__ = ["CACHE_COUNTERS", "HISTORY_COUNTERS", "Metrics", "stats_json"]

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
CACHE_COUNTERS = tuple(name for name in FamilyStats.__dataclass_fields__ if name != "by_family")
HISTORY_COUNTERS = ("hits", "misses", "stale_hits", "sets", "deletes", "errors", "skipped")
#: The history keeps at most this much of a topic or family (its rows' labels are bounded).
LABEL_CHARS = 128
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class Metrics:
    """One service's metrics. Multiprocess mode when PROMETHEUS_MULTIPROC_DIR is set."""

    def __init__(
        self, environ: Mapping[str, str] | None = None, *, history: History | None = None
    ) -> None:
        env = os.environ if environ is None else environ
        self.history = history
        self.directory = env.get(MULTIPROC_ENV) or None
        self.registry = CollectorRegistry(auto_describe=True)
        if self.directory is not None:
            if prometheus_values.ValueClass is prometheus_values.MutexValue:
                raise RuntimeError(
                    f"{MULTIPROC_ENV} was set after prometheus_client was imported; "
                    "set it before the service starts"
                )
            MultiProcessCollector(self.registry, path=self.directory)  # type: ignore[no-untyped-call]
            target: CollectorRegistry | None = None
        else:
            target = self.registry
        self.webhooks = Counter(
            "kvcache_webhooks",
            "Webhook deliveries answered, by topic and outcome.",
            ["topic", "outcome"],
            registry=target,
        )
        self.duration = Histogram(
            "kvcache_webhook_duration_seconds",
            "Seconds spent running a delivery's handlers, by topic.",
            ["topic"],
            buckets=BUCKETS,
            registry=target,
        )
        self.cache = {
            name: Counter(
                f"kvcache_cache_{name}",
                f"The cache's {name} counter (kvcache.CacheStats), summed over workers.",
                ["cache", "family"],
                registry=target,
            )
            for name in CACHE_COUNTERS
        }
        self._pushed: dict[tuple[str, str], FamilyStats] = {}

    def observe(self, topic: str, outcome: str, seconds: float | None = None) -> None:
        self.webhooks.labels(topic, outcome).inc()
        if self.history is not None:
            self.history.add("webhooks", {"topic": topic[:LABEL_CHARS], "outcome": outcome})
        if seconds is not None:
            self.duration.labels(topic).observe(seconds)

    def push_cache(self, name: str, stats: CacheStats) -> None:
        """Add each family's growth since the last push to the Prometheus counters
        (and to the history's `cache` series)."""
        for family, now in stats.by_family.items():
            before = self._pushed.get((name, family))
            for counter in CACHE_COUNTERS:
                delta = getattr(now, counter) - (getattr(before, counter) if before else 0)
                if delta > 0:
                    self.cache[counter].labels(name, family).inc(delta)
                    if self.history is not None and counter in HISTORY_COUNTERS:
                        labels = {"cache": name, "family": family[:LABEL_CHARS], "counter": counter}
                        self.history.add("cache", labels, delta)
            self._pushed[(name, family)] = now

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def cache_sums(self) -> dict[str, dict[str, float]]:
        """family -> counter -> value, summed over caches and workers."""
        sums: dict[str, dict[str, float]] = {}
        for metric in self.registry.collect():
            counter = metric.name.removeprefix("kvcache_cache_")
            if counter == metric.name or counter not in CACHE_COUNTERS:
                continue
            for sample in metric.samples:
                if not sample.name.endswith("_total"):
                    continue
                family = sample.labels.get("family", "")
                row = sums.setdefault(family, dict.fromkeys(CACHE_COUNTERS, 0.0))
                row[counter] += sample.value
        return sums


def _shape(row: Mapping[str, float]) -> dict[str, Any]:
    served = row["hits"] + row["stale_hits"]
    lookups = served + row["misses"]
    return {
        "hits": int(row["hits"]),
        "misses": int(row["misses"]),
        "sets": int(row["sets"]),
        "deletes": int(row["deletes"]),
        "errors": int(row["errors"]),
        "hitRate": served / lookups if lookups else 0.0,
    }


def stats_json(sums: Mapping[str, Mapping[str, float]]) -> dict[str, Any]:
    """The seed's getCacheStats shape: totals, hitRate and by_family."""
    total = dict.fromkeys(CACHE_COUNTERS, 0.0)
    for row in sums.values():
        for counter in CACHE_COUNTERS:
            total[counter] += row[counter]
    out = _shape(total)
    out["by_family"] = {family: _shape(row) for family, row in sorted(sums.items())}
    return out
