"""kvcache's exceptions, all in one place.

The hierarchy::

    KVError                      root of everything kvcache raises on purpose
    ├── KVValidationError        caller mistake (also ValueError); `.status` as Workers KV
    ├── KVConfigError            bad store URL or option (also ValueError)
    ├── KVBackendError           the store itself failed (connection, disk, HTTP)
    ├── IdempotencyError         idempotency misuse and conflicts
    │   ├── AlreadyInProgress    another worker holds the claim; retry later
    │   └── ClaimLost            our lease expired and another worker took the key over
    └── ShopifyError             a call to a shop's Admin API, or the shop itself, failed
        ├── ShopifyHTTPError     a status that no retry will change (402, 404, 423, ...)
        │   └── ShopifyAuthError 401/403, or no usable token: that shop's token is bad
        ├── ShopifyUnavailable   429, THROTTLED, 502-504 or no answer, after the retries
        ├── GraphQLError         the response's `errors` list (`.errors`)
        ├── CustomerCreationError  customerCreate's userErrors (`.field`, `.message`)
        └── ShopNotFound         the shop was never added, or is uninstalled

Shopify errors never carry an access token: messages name the shop and the status.

The store's own errors live in `kvcache.kv.errors` (the store layer imports
nothing above it); this module adds the layers above them.
"""

from __future__ import annotations

from typing import Any

from .kv.errors import KVBackendError, KVConfigError, KVError, KVValidationError

__all__ = [
    "AlreadyInProgress",
    "ClaimLost",
    "CustomerCreationError",
    "GraphQLError",
    "IdempotencyError",
    "KVBackendError",
    "KVConfigError",
    "KVError",
    "KVValidationError",
    "ShopNotFound",
    "ShopifyAuthError",
    "ShopifyError",
    "ShopifyHTTPError",
    "ShopifyUnavailable",
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


class ShopifyError(KVError):
    """Base of the errors of Shopify's Admin API and of the shops kvcache knows."""

    def __init__(self, message: str, *, shop: str | None = None) -> None:
        self.shop = shop
        super().__init__(message)


class ShopifyHTTPError(ShopifyError):
    """Shopify answered a status that retrying will not change; `.status` is it."""

    def __init__(self, message: str, *, shop: str | None = None, status: int) -> None:
        self.status = status
        super().__init__(message, shop=shop)


class ShopifyAuthError(ShopifyHTTPError):
    """401 or 403 (or no token could be had): the shop's token is bad, revoked or lacks a scope."""


class ShopifyUnavailable(ShopifyError):
    """Shopify throttled or failed every attempt; `retry_after` is seconds to wait, if known."""

    def __init__(
        self, message: str, *, shop: str | None = None, retry_after: float | None = None
    ) -> None:
        self.retry_after = retry_after
        super().__init__(message, shop=shop)


class GraphQLError(ShopifyError):
    """The response carried GraphQL `errors`; `.errors` is the list, `.codes` their codes."""

    def __init__(
        self, errors: list[dict[str, Any]], *, shop: str | None = None, data: Any = None
    ) -> None:
        self.errors = errors
        self.data = data
        first = errors[0].get("message", "") if errors and isinstance(errors[0], dict) else ""
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        super().__init__(f"GraphQL error from {shop or 'Shopify'}: {first}{more}", shop=shop)

    @property
    def codes(self) -> list[str]:
        found = []
        for error in self.errors:
            extensions = error.get("extensions") if isinstance(error, dict) else None
            if isinstance(extensions, dict) and isinstance(extensions.get("code"), str):
                found.append(extensions["code"])
        return found


class CustomerCreationError(ShopifyError):
    """customerCreate refused the input (or kvcache did, before sending it): the first
    user error's `field` and `message`.

    `errors` holds every user error as Shopify sent it (`{"field": [...], "message": ...}`).
    """

    def __init__(
        self,
        field: list[str] | None,
        message: str,
        *,
        errors: list[dict[str, Any]] | None = None,
        shop: str | None = None,
    ) -> None:
        self.field = field
        self.message = message
        self.errors = errors if errors is not None else [{"field": field, "message": message}]
        where = ".".join(field) if field else "input"
        super().__init__(f"customerCreate refused {where}: {message}", shop=shop)


class ShopNotFound(ShopifyError):
    """The shop was never added with `kvcache shop add`, or it uninstalled the app."""

    def __init__(self, shop: str, *, uninstalled: bool = False) -> None:
        self.uninstalled = uninstalled
        state = "uninstalled the app" if uninstalled else "is not a shop kvcache knows"
        super().__init__(f"{shop} {state}", shop=shop)
