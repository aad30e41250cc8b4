"""Moved to `kvcache.cache.stats`; this import path keeps working."""

from __future__ import annotations

from .cache.stats import (
    OTHER_FAMILY,
    CacheStats,
    Counters,
    FamilyStats,
    StatsRecorder,
    family_of,
    prometheus_collector,
    register_prometheus,
)

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
