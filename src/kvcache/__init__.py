"""kvcache: Workers KV semantics for Python, a correct cache layer and exactly-once webhooks."""

from __future__ import annotations

from .errors import (
    AlreadyInProgress,
    ClaimLost,
    IdempotencyError,
    KVBackendError,
    KVConfigError,
    KVError,
    KVValidationError,
)
from .kv import KeyInfo, KVEntry, KVStore, Limits, ListPage, OpenKV, open_kv

__version__ = "0.1.0"

__all__ = [
    "AlreadyInProgress",
    "ClaimLost",
    "IdempotencyError",
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
    "__version__",
    "open_kv",
]
