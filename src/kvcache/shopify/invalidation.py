"""Built-in handlers: the seed's invalidation table, scoped by shop, plus compliance topics.

    customers/create|update|delete  that customer by id and under every e-mail it
                                    was cached under (the id -> e-mails index: a
                                    delete carries no e-mail, an update may change it)
    shop/update                     the shop's cached configuration
    app/uninstalled                 the shop marked uninstalled, its stored token
                                    deleted; then everything cached for it, every page
    customers/data_request          recorded in the app database
    customers/redact, shop/redact   the customer's or shop's cached data, and their
                                    rows in the delivery log

The cache fails open, so a delete against a store that is down would pass
silently. A handler's keys go in one `Cache.delete_many`, which says how many
the store took; when that is not all of them (the write failed, or the breaker
skipped it), the handler reads the keys back from the store (which raises when
it is down) and fails unless they are gone: the delivery answers 500 and
Shopify's retry invalidates again. A purge
compares the cache's counts of failed and skipped calls the same way.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .. import Cache
from . import keys
from .context import HandlerContext
from .webhooks import Delivery, DeliveryError, Webhooks

__all__ = ["InvalidationIncomplete", "cache_customer", "forget_customer", "purge_shop", "register"]

_GET_MANY_MAX = 100


class InvalidationIncomplete(RuntimeError):
    """Keys were still in the store after their deletion: the delivery fails and is retried."""


async def _index(cache: Cache, prefix: str) -> list[str]:
    """Every key name under `prefix` (without the cache's own prefix), all pages."""
    names: list[str] = []
    full, cursor = cache.prefix + prefix, None
    while True:
        page = await cache.kv.list(prefix=full, cursor=cursor)
        names.extend(info.name[len(cache.prefix) :] for info in page.keys)
        if page.list_complete:
            return names
        cursor = page.cursor


async def _delete_verified(cache: Cache, names: Iterable[str]) -> int:
    unique = list(dict.fromkeys(names))
    if await cache.delete_many(unique) == len(unique):
        return len(unique)  # the store took every tombstone
    for start in range(0, len(unique), _GET_MANY_MAX):
        batch = [cache.prefix + name for name in unique[start : start + _GET_MANY_MAX]]
        left = [
            name for name, value in (await cache.kv.get_many(batch)).items() if value is not None
        ]
        if left:
            raise InvalidationIncomplete(f"{len(left)} invalidated keys are still cached")
    return len(unique)


async def cache_customer(cache: Cache, shop: str, customer: dict[str, Any], ttl: float) -> None:
    """Cache a customer by e-mail and id, indexing the e-mail first so none is orphaned."""
    email, ident = customer.get("email"), customer.get("id")
    if ident is None:
        raise ValueError("customer has no id")
    if email:
        await cache.set(keys.customer_index_key(shop, ident, email), email, ttl=ttl)
        await cache.set(keys.customer_email_key(shop, email), customer, ttl=ttl)
    await cache.set(keys.customer_id_key(shop, ident), customer, ttl=ttl)


async def forget_customer(
    cache: Cache, shop: str, customer: Any | None, emails: Iterable[str | None] = ()
) -> int:
    """Drop a customer's entries by id and under every indexed or given e-mail."""
    names = [keys.customer_email_key(shop, email) for email in emails if email]
    if customer is not None:
        indexed = await _index(cache, keys.customer_emails_prefix(shop, customer))
        prefix_len = len(keys.customer_emails_prefix(shop, customer))
        names += [keys.customer_email_key(shop, name[prefix_len:]) for name in indexed]
        names += [keys.customer_id_key(shop, customer), *indexed]
    return await _delete_verified(cache, names)


def _missed(cache: Cache) -> int:
    """Store calls the cache failed or skipped (its breaker open) so far."""
    stats = cache.stats()
    return stats.errors + stats.skipped


async def purge_shop(cache: Cache, shop: str) -> int:
    """Delete everything cached for `shop`; fails if anything is left."""
    prefix = keys.shop_prefix(shop)
    missed = _missed(cache)
    removed = await cache.delete_prefix(prefix)
    if _missed(cache) == missed:
        return removed
    page = await cache.kv.list(prefix=cache.prefix + prefix, limit=1)
    if page.keys:
        raise InvalidationIncomplete(f"keys of {shop} are still cached after the purge")
    return removed


def _customer_id(delivery: Delivery) -> Any:
    value = delivery.payload.get("id")
    if value is None:
        raise DeliveryError(f"{delivery.topic} payload has no customer id")
    return value


async def customer_changed(delivery: Delivery, ctx: HandlerContext) -> dict[str, int]:
    """customers/create, update, delete: a create clears a cached "not found" too."""
    email = delivery.payload.get("email")
    deleted = await forget_customer(ctx.cache, delivery.shop, _customer_id(delivery), [email])
    return {"invalidated": deleted}


async def shop_updated(delivery: Delivery, ctx: HandlerContext) -> dict[str, int]:
    deleted = await _delete_verified(ctx.cache, [keys.shop_config_key(delivery.shop)])
    return {"invalidated": deleted}


async def app_uninstalled(delivery: Delivery, ctx: HandlerContext) -> dict[str, int]:
    # Uninstalled first, so no look-up for the shop starts (and caches) after the purge.
    if ctx.shops is not None:
        await ctx.shops.uninstall(delivery.shop)
    return {"invalidated": await purge_shop(ctx.cache, delivery.shop)}


async def customer_data_request(delivery: Delivery, ctx: HandlerContext) -> dict[str, bool]:
    await ctx.log.record_data_request(delivery)
    return {"recorded": True}


async def customer_redact(delivery: Delivery, ctx: HandlerContext) -> dict[str, int]:
    customer = delivery.payload.get("customer")
    if not isinstance(customer, dict) or not (customer.get("id") or customer.get("email")):
        raise DeliveryError("customers/redact payload names no customer id or e-mail")
    ident = customer.get("id")
    deleted = await forget_customer(ctx.cache, delivery.shop, ident, [customer.get("email")])
    rows = 0
    if ident is not None:
        rows = await ctx.log.redact(delivery.shop, str(ident), keep=delivery.webhook_id)
    return {"invalidated": deleted, "log_rows": rows}


async def shop_redact(delivery: Delivery, ctx: HandlerContext) -> dict[str, int]:
    deleted = await purge_shop(ctx.cache, delivery.shop)
    rows = await ctx.log.redact(delivery.shop, keep=delivery.webhook_id)
    return {"invalidated": deleted, "log_rows": rows}


def register(webhooks: Webhooks) -> None:
    """Add the built-in handlers to a registry (the service always does)."""
    for topic in ("customers/create", "customers/update", "customers/delete"):
        webhooks.add(topic, customer_changed)
    webhooks.add("shop/update", shop_updated)
    webhooks.add("app/uninstalled", app_uninstalled)
    webhooks.add("customers/data_request", customer_data_request)
    webhooks.add("customers/redact", customer_redact)
    webhooks.add("shop/redact", shop_redact)
