"""kvcache: Workers KV semantics for Python, a correct cache layer and exactly-once webhooks."""

from __future__ import annotations

# `kvcache.stats.register_prometheus(cache)` works after a bare `import kvcache`.
from . import stats as stats  # noqa: E402
from .cache import JSON, Cache, CacheStats, CacheTTLWarning, CircuitBreaker, FamilyStats, Serializer
from .errors import (
    AlreadyInProgress,
    ClaimLost,
    CustomerCreationError,
    GraphQLError,
    IdempotencyError,
    KVBackendError,
    KVConfigError,
    KVError,
    KVValidationError,
    ShopifyAuthError,
    ShopifyError,
    ShopifyHTTPError,
    ShopifyUnavailable,
    ShopNotFound,
)
from .idempotency import Claim, Idempotency, Outcome
from .kv import KeyInfo, KVEntry, KVStore, Limits, ListPage, Meter, OpenKV, open_kv

__version__ = "0.1.0"

__all__ = [
    "AlreadyInProgress",
    "Cache",
    "CacheStats",
    "CacheTTLWarning",
    "CircuitBreaker",
    "Claim",
    "ClaimLost",
    "CustomerCreationError",
    "FamilyStats",
    "GraphQLError",
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
    "Meter",
    "OpenKV",
    "Outcome",
    "Serializer",
    "ShopNotFound",
    "ShopifyAuthError",
    "ShopifyError",
    "ShopifyHTTPError",
    "ShopifyUnavailable",
    "__version__",
    "open_kv",
]

# Public objects report the path users import them from (httpx does the same), so
# reprs, tracebacks and docs show `kvcache.Cache`, not the private module.
for _name in __all__:
    _value = globals()[_name]
    if isinstance(_value, type) or callable(_value):
        _value.__module__ = "kvcache"
del _name, _value
