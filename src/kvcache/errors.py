"""kvcache's exceptions, all in one place.

The hierarchy::

    KVError                      root of everything kvcache raises on purpose
    ├── KVValidationError        caller mistake (also ValueError); `.status` as Workers KV
    ├── KVConfigError            bad store URL or option (also ValueError)
    ├── KVBackendError           the store itself failed (connection, disk, HTTP)
    └── IdempotencyError         idempotency misuse and conflicts
        ├── AlreadyInProgress    another worker holds the claim; retry later
        └── ClaimLost            our lease expired and another worker took the key over

The store's own errors live in `kvcache.kv.errors` (the store layer imports
nothing above it); this module adds the layers above them.
"""

from __future__ import annotations

from .kv.errors import KVBackendError, KVConfigError, KVError, KVValidationError

__all__ = [
    "AlreadyInProgress",
    "ClaimLost",
    "IdempotencyError",
    "KVBackendError",
    "KVConfigError",
    "KVError",
    "KVValidationError",
]


class IdempotencyError(KVError):
    """Base of the idempotency errors."""


class AlreadyInProgress(IdempotencyError):
    """Another worker holds an unexpired claim on this key; answer a retryable status.

    `retry_after` (whole seconds, or None) is when the holder's lease ends at the latest.
    """

    def __init__(self, key: str, *, retry_after: int | None = None) -> None:
        self.key = key
        self.retry_after = retry_after
        super().__init__(f"idempotency key {key!r} is already being processed")


class ClaimLost(IdempotencyError):
    """Our lease expired and another worker took the key over; our result was refused."""

    def __init__(self, key: str) -> None:
        self.key = key
        super().__init__(f"claim on idempotency key {key!r} was lost to another worker")
