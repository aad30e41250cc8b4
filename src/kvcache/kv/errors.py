"""The store layer's exceptions (kvcache.errors re-exports them with the rest).

The hierarchy::

    KVError                      root of everything kvcache raises on purpose
    ├── KVValidationError        caller mistake (also ValueError); `.status` as Workers KV
    ├── KVConfigError            bad store URL or option (also ValueError)
    └── KVBackendError           the store itself failed (connection, disk, HTTP)

Caller mistakes and runtime failures are separate roots below `KVError` so that
the cache layer can fail open on `KVBackendError` while still raising on bugs.
"""

from __future__ import annotations

__all__ = ["KVBackendError", "KVConfigError", "KVError", "KVValidationError", "shown"]


class KVError(Exception):
    """Base class of every error kvcache raises."""


class KVValidationError(KVError, ValueError):
    """A key, value, metadata, TTL, limit or cursor that Workers KV would refuse.

    `str(err)` is Workers KV's own message (`KV PUT failed: 400 Invalid ...`);
    `err.message` is the bare server text and `err.status` the HTTP-like status.
    """

    def __init__(self, message: str, *, status: int = 400, op: str | None = None) -> None:
        self.message = message
        self.status = status
        self.op = op
        text = f"KV {op} failed: {status} {message}" if op else message
        super().__init__(text)


class KVConfigError(KVError, ValueError):
    """A store URL or option that cannot be used (unknown scheme, missing extra)."""


class KVBackendError(KVError):
    """The store failed: unreachable server, unwritable or corrupt file, HTTP error.

    `backend` names the store ("sqlite", "redis", ...); the driver's exception is
    kept as `__cause__` and `cause`.
    """

    def __init__(self, message: str, *, backend: str, cause: BaseException | None = None) -> None:
        self.backend = backend
        self.cause = cause
        super().__init__(f"{backend}: {message}")


def shown(number: object) -> str:
    """`number` for an error message; an int too long to print (4,300 digits) by its size."""
    if isinstance(number, int) and not -(10**100) < number < 10**100:
        return f"{'-' if number < 0 else ''}<an int of {number.bit_length()} bits>"
    return repr(number)
