"""The cache layer: `Cache` over any store, its serializers, statistics and decorators."""

from __future__ import annotations

from ._breaker import CircuitBreaker
from ._cache import Cache
from ._ttl import DEFAULT, CacheTTLWarning
from .serializers import JSON, JsonSerializer, Serializer
from .stats import CacheStats, FamilyStats

__all__ = [
    "DEFAULT",
    "JSON",
    "Cache",
    "CacheStats",
    "CacheTTLWarning",
    "CircuitBreaker",
    "FamilyStats",
    "JsonSerializer",
    "Serializer",
]
