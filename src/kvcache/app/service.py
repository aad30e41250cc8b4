"""The service's parts, opened together from `Settings` and closed together.

Stores: the cache in namespace CACHE and the webhook claims in namespace
WEBHOOKS of the one store `settings.store` names; the app database; the
handler registry (built-in invalidation handlers first, then each
`--handlers` module's `register(webhooks)`). The web app and the CLI's
`webhook list|replay` both use it; `replay` is the one way a failed delivery
is run again (the command and the dashboard's button).
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable
from dataclasses import dataclass

from .. import Cache, CircuitBreaker, Idempotency, KVStore, Limits, open_kv
from ..kv.meter import Meter
from ..shopify import invalidation, keys
from ..shopify.context import HandlerContext
from ..shopify.db import migrate, open_database
from ..shopify.deliveries import DeliveryLog
from ..shopify.history import History
from ..shopify.origins import Origins
from ..shopify.processor import Answer, WebhookProcessor
from ..shopify.shops import ShopRegistry
from ..shopify.webhooks import Webhooks
from . import usage
from .settings import Settings, SettingsError

__all__ = ["CACHE_NAMESPACE", "WEBHOOKS_NAMESPACE", "ReplayRefused", "Service", "load_handlers"]

CACHE_NAMESPACE = "CACHE"
WEBHOOKS_NAMESPACE = "WEBHOOKS"
#: Workers KV's limits, but claims may hold a lease shorter than its 60 s minimum TTL.
CLAIM_LIMITS = Limits(min_expiration_ttl=1)


def load_handlers(webhooks: Webhooks, modules: tuple[str, ...]) -> None:
    """Import each module and call its `register(webhooks)`."""
    for name in modules:
        try:
            module = importlib.import_module(name)
        except ImportError as exc:
            raise SettingsError(f"handlers module {name!r} cannot be imported: {exc}") from exc
        register = getattr(module, "register", None)
        if not callable(register):
            raise SettingsError(f"handlers module {name!r} has no register(webhooks) function")
        register(webhooks)


class ReplayRefused(ValueError):
    """A delivery that cannot be replayed; `reason` is not_found, ambiguous or not_failed."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass
class Service:
    """Open stores, database and processor; `await Service.open(settings)`, then `close()`."""

    settings: Settings
    cache_store: KVStore
    claim_store: KVStore
    cache: Cache
    log: DeliveryLog
    processor: WebhookProcessor
    webhooks: Webhooks
    origins: Origins
    history: History
    breaker: CircuitBreaker

    @classmethod
    async def open(cls, settings: Settings, *, clock: Callable[[], float] = time.time) -> Service:
        webhooks = Webhooks()
        invalidation.register(webhooks)
        load_handlers(webhooks, settings.handlers)
        engine = open_database(settings.database_url)
        opened: list[KVStore] = []
        meter = Meter(keys.meter_family, clock=clock)  # both stores count into it (docs/cost.md)
        try:
            await migrate(engine)
            shops = ShopRegistry(engine, secret_key=settings.secret_key, clock=clock)
            cache_store = await open_kv(
                settings.store, namespace=CACHE_NAMESPACE, clock=clock, meter=meter
            )
            opened.append(cache_store)
            claim_store = await open_kv(
                settings.store,
                namespace=WEBHOOKS_NAMESPACE,
                limits=CLAIM_LIMITS,
                clock=clock,
                meter=meter,
            )
            opened.append(claim_store)
            idempotency = Idempotency(
                claim_store,
                lease_ttl=settings.webhook_lease_ttl,
                result_ttl=settings.webhook_result_ttl,
            )
        except BaseException:
            for store in opened:
                await store.close()
            await engine.dispose()
            raise
        breaker = CircuitBreaker()
        cache = Cache(cache_store, family=keys.family, breaker=breaker)
        log = DeliveryLog(engine, clock=clock)
        log.start()
        history = History(engine, clock=clock)
        history.start()
        admin_options = {"retries": settings.shopify_retries}
        origins = Origins(engine, cache, shops, admin_options=admin_options, clock=clock)
        context = HandlerContext(cache=cache, log=log, clock=clock, shops=shops)
        processor = WebhookProcessor(settings.api_secrets, webhooks, idempotency, context, log)
        return cls(
            settings,
            cache_store,
            claim_store,
            cache,
            log,
            processor,
            webhooks,
            origins,
            history,
            breaker,
        )

    async def replay(self, webhook_id: str, shop: str | None = None) -> Answer:
        """Run a failed delivery's handlers again from its stored body; raises ReplayRefused."""
        rows = await self.log.find(webhook_id, shop)
        if not rows:
            raise ReplayRefused("not_found", f"no delivery {webhook_id!r} in the log")
        if len({row.shop for row, _ in rows}) > 1:
            raise ReplayRefused(
                "ambiguous",
                f"webhook id {webhook_id!r} exists for several shops: name the shop (--shop)",
            )
        row, body = rows[0]
        if body is None:
            raise ReplayRefused(
                "not_failed",
                f"delivery {webhook_id!r} is {row.outcome}: only a failed delivery's body "
                "is kept for replay",
            )
        headers = await self.log.headers_of(row.shop, webhook_id)
        return await self.processor.replay(headers, body)

    async def prune(self) -> int:
        """Drop delivery-log rows older than the retention, and history older than 7 days."""
        await self.history.prune()
        return await self.log.prune(self.settings.webhook_log_retention)

    async def close(self) -> None:
        await self.origins.aclose()
        await self.cache.close()
        await self.log.close()
        self.record_meter()
        await self.history.close()
        await self.cache_store.close()
        await self.claim_store.close()
        await self.log.engine.dispose()

    def record_meter(self) -> None:
        """Move the stores' billable-operation counts into the history (kv_ops)."""
        meter = self.cache_store.meter
        if meter is not None:
            usage.record(self.history, meter.drain())

    async def sample_stored(self) -> None:
        """Sample the bytes each namespace holds into the history (kv_stored_bytes)."""
        meter = self.cache_store.meter
        if meter is None:
            return
        for store in (self.cache_store, self.claim_store):
            meter.stored(store.namespace, await store.stored_bytes())
