"""kvcache: Workers KV semantics for Python, a correct cache layer and exactly-once webhooks."""

from __future__ import annotations

from .cache import Cache
from .errors import (
    AlreadyInProgress,
    ClaimLost,
    IdempotencyError,
    KVBackendError,
    KVConfigError,
    KVError,
    KVValidationError,
)
from .idempotency import Claim, Idempotency, Outcome
from .kv import KeyInfo, KVEntry, KVStore, Limits, ListPage, OpenKV, open_kv
from .serializers import JSON, Serializer
from .stats import CacheStats, FamilyStats

__version__ = "0.1.0"

__all__ = [
    "AlreadyInProgress",
    "Cache",
    "CacheStats",
    "Claim",
    "ClaimLost",
    "FamilyStats",
    "Idempotency",
    "IdempotencyError",
    "JSON",
    "KVBackendError",
    "KVConfigError",
    "KVEntry",
    "KVError",
    "KVStore",
    "KVValidationError",
    "KeyInfo",
    "Limits",
    "ListPage",
    "OpenKV",
    "Outcome",
    "Serializer",
    "__version__",
    "open_kv",
]
