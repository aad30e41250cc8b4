"""Shopify webhook deliveries: the HMAC check, the parsed delivery, the handler registry.

Shopify signs the raw request body with the app's client secret (HMAC-SHA256,
base64) and sends it in `X-Shopify-Hmac-Sha256`; during a secret rotation either
secret may sign, so every configured secret is tried, each in constant time.
Header names are matched case-insensitively (HTTP/2 sends them in lower case),
and the newer Events deliveries' `shopify-*` names are read as well.

Handlers are `async def handle(delivery, ctx)`, registered by topic with
`@webhooks.on("customers/update")`; they get the whole `Delivery` (every header,
both ids, the raw body and the parsed payload).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import inspect
import re
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

from ..kv._json import loads as json_loads

__all__ = [
    "Delivery",
    "DeliveryError",
    "Handler",
    "Webhooks",
    "parse_delivery",
    "sign",
    "signed_headers",
    "verify_hmac",
]

#: `X-Shopify-Topic` and the Events name `shopify-topic`, and so on: classic first.
_HEADERS = {
    "topic": "topic",
    "shop": "shop-domain",
    "api_version": "api-version",
    "webhook_id": "webhook-id",
    "event_id": "event-id",
    "triggered_at": "triggered-at",
    "name": "name",
    "handle": "handle",
    "action": "action",
    "resource_id": "resource-id",
}
REQUIRED = ("topic", "shop", "webhook_id")
HMAC_HEADERS = ("x-shopify-hmac-sha256", "shopify-hmac-sha256")
#: A shop's permanent domain; it becomes part of cache keys, so nothing else passes.
SHOP_DOMAIN = re.compile(r"[a-z0-9][a-z0-9-]{0,99}\.myshopify\.com")
_TOPIC = re.compile(r"[a-z0-9_]+([/.][a-z0-9_]+)+")
MAX_ID_CHARS = 255


class DeliveryError(ValueError):
    """A signed request that is not a usable delivery: answered 400.

    `missing` lists the headers that were absent (in their `X-Shopify-*` form).
    """

    def __init__(self, message: str, *, missing: tuple[str, ...] = ()) -> None:
        self.missing = missing
        super().__init__(message)


def sign(body: bytes, secret: str) -> str:
    """The `X-Shopify-Hmac-Sha256` value Shopify sends for `body` signed with `secret`."""
    digest = hmac.new(secret.encode("utf-8"), body, hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def signed_headers(
    body: bytes,
    topic: str,
    shop: str,
    secret: str,
    *,
    webhook_id: str | None = None,
    event_id: str | None = None,
    api_version: str = "2025-07",
) -> dict[str, str]:
    """The headers Shopify sends with `body`: signed, with fresh ids unless given."""
    return {
        "Content-Type": "application/json",
        "X-Shopify-Topic": topic,
        "X-Shopify-Hmac-Sha256": sign(body, secret),
        "X-Shopify-Shop-Domain": shop,
        "X-Shopify-API-Version": api_version,
        "X-Shopify-Webhook-Id": webhook_id or str(uuid.uuid4()),
        "X-Shopify-Event-Id": event_id or str(uuid.uuid4()),
        "X-Shopify-Triggered-At": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
    }


def verify_hmac(body: bytes, header: str | None, secrets: Iterable[str]) -> bool:
    """True when `header` is the base64 HMAC-SHA256 of `body` under one of `secrets`.

    Every secret is compared (no early exit on a match), each with
    `hmac.compare_digest`, so the time taken says nothing about which one failed.
    """
    if not header:
        return False
    given = header.strip().encode("ascii", "replace")
    valid = False
    for secret in secrets:
        valid |= hmac.compare_digest(sign(body, secret).encode("ascii"), given)
    return valid


def hmac_header(headers: Mapping[str, str]) -> str | None:
    """The signature header of a classic or an Events delivery, whatever its case."""
    lowered = _lower(headers)
    for name in HMAC_HEADERS:
        if name in lowered:
            return lowered[name]
    return None


@dataclass(frozen=True, slots=True)
class Delivery:
    """One webhook delivery as a handler sees it.

    `webhook_id` names this delivery (the de-duplication key, with `shop`);
    `event_id` is shared by every delivery of one merchant action. `headers` has
    every request header, lower-cased. `kind` is "webhooks" or "events".
    """

    topic: str
    shop: str
    webhook_id: str
    payload: Any
    body: bytes
    headers: Mapping[str, str] = field(repr=False)
    api_version: str | None = None
    event_id: str | None = None
    triggered_at: str | None = None
    name: str | None = None
    kind: str = "webhooks"
    handle: str | None = None
    action: str | None = None
    resource_id: str | None = None

    @property
    def body_sha256(self) -> str:
        """Hex SHA-256 of the raw body: tells a true duplicate from an id reused."""
        return hashlib.sha256(self.body).hexdigest()


def _lower(headers: Mapping[str, str]) -> dict[str, str]:
    return {name.lower(): value for name, value in headers.items()}


def _header(lowered: Mapping[str, str], suffix: str) -> str | None:
    for name in (f"x-shopify-{suffix}", f"shopify-{suffix}"):
        value = lowered.get(name)
        if value is not None and value.strip():
            return value.strip()
    return None


def parse_delivery(headers: Mapping[str, str], body: bytes) -> Delivery:
    """Build a `Delivery` from request headers (any case) and the raw body.

    Raises `DeliveryError` naming the missing headers, a malformed shop domain,
    topic or id, or a body that is not a JSON object. Call it after the HMAC check.
    """
    lowered = _lower(headers)
    values = {attr: _header(lowered, suffix) for attr, suffix in _HEADERS.items()}
    missing = tuple(f"X-Shopify-{_HEADERS[a].title()}" for a in REQUIRED if values[a] is None)
    if missing:
        raise DeliveryError(
            "missing one or more of the required webhook headers: " + ", ".join(missing),
            missing=missing,
        )
    topic, shop, webhook_id = (str(values[a]) for a in REQUIRED)
    if not _TOPIC.fullmatch(topic):
        raise DeliveryError(f"X-Shopify-Topic {topic[:80]!r} is not a webhook topic")
    if not SHOP_DOMAIN.fullmatch(shop):
        raise DeliveryError(f"X-Shopify-Shop-Domain {shop[:80]!r} is not a *.myshopify.com domain")
    if len(webhook_id) > MAX_ID_CHARS or not webhook_id.isprintable():
        raise DeliveryError(f"X-Shopify-Webhook-Id must be 1..{MAX_ID_CHARS} printable characters")
    try:
        payload = json_loads(body)  # json.loads' result, decoded by msgspec when it can
    except (ValueError, UnicodeDecodeError) as exc:
        raise DeliveryError(f"the body is not JSON: {exc}") from exc
    if not isinstance(payload, dict):
        raise DeliveryError("the body is not a JSON object")
    return Delivery(
        topic=topic,
        shop=shop,
        webhook_id=webhook_id,
        payload=payload,
        body=body,
        headers=lowered,
        api_version=values["api_version"],
        event_id=values["event_id"],
        triggered_at=values["triggered_at"],
        name=values["name"],
        kind="events" if "shopify-hmac-sha256" in lowered else "webhooks",
        handle=values["handle"],
        action=values["action"],
        resource_id=values["resource_id"],
    )


#: `async def handle(delivery, ctx) -> JSON-able result`; ctx is the service's `HandlerContext`.
Handler = Callable[[Delivery, Any], Awaitable[Any]]
H = TypeVar("H", bound=Handler)


def normalize_topic(topic: str) -> str:
    """A topic in the header's form (`customers/update`), checked and lower-cased.

    The GraphQL enum form (`CUSTOMERS_UPDATE`) is refused: it cannot be turned
    back reliably (`APP_SUBSCRIPTIONS_UPDATE` is `app_subscriptions/update`).
    """
    if not isinstance(topic, str):
        raise TypeError(f"topic must be a str, not {type(topic).__name__}")
    text = topic.strip().lower()
    if not _TOPIC.fullmatch(text):
        raise ValueError(f"topic {topic!r} is not a webhook topic such as 'customers/update'")
    return text


class Webhooks:
    """Handlers by topic. Several handlers of one topic run in registration order."""

    def __init__(self) -> None:
        self._handlers: dict[str, list[Handler]] = {}

    def on(self, topic: str) -> Callable[[H], H]:
        """Decorator: `@webhooks.on("orders/create") async def handle(delivery, ctx): ...`."""
        name = normalize_topic(topic)

        def register(handler: H) -> H:
            self.add(name, handler)
            return handler

        return register

    def add(self, topic: str, handler: Handler) -> None:
        """Register `handler` for `topic`; it must be an async function of (delivery, ctx)."""
        if not inspect.iscoroutinefunction(handler):
            raise TypeError(
                f"webhook handler {handler!r} must be an async function (async def handle("
                "delivery, ctx))"
            )
        self._handlers.setdefault(normalize_topic(topic), []).append(handler)

    def handlers(self, topic: str) -> tuple[Handler, ...]:
        """The handlers of `topic` (empty when it has none: the delivery is ignored)."""
        return tuple(self._handlers.get(topic.lower(), ()))

    @property
    def topics(self) -> tuple[str, ...]:
        return tuple(sorted(self._handlers))

    def __repr__(self) -> str:
        return f"<Webhooks topics={list(self.topics)}>"
