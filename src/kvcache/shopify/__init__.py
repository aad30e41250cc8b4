"""Shopify pieces on the store, cache and idempotency layers: webhooks and their handlers."""

from __future__ import annotations

from .context import HandlerContext
from .processor import Answer, WebhookProcessor
from .webhooks import Delivery, DeliveryError, Webhooks, parse_delivery, sign, verify_hmac

__all__ = [
    "Answer",
    "Delivery",
    "DeliveryError",
    "HandlerContext",
    "WebhookProcessor",
    "Webhooks",
    "parse_delivery",
    "sign",
    "verify_hmac",
]
