"""What a webhook handler gets beside the delivery: the service's cache and database."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from .. import Cache, KVStore
from .deliveries import DeliveryLog
from .shops import ShopRegistry

__all__ = ["HandlerContext"]


@dataclass(frozen=True, slots=True)
class HandlerContext:
    """`ctx` of `async def handle(delivery, ctx)`.

    `cache` is the shop data cache (namespace CACHE, keys from `kvcache.shopify.keys`),
    `store` the store under it, `log` the delivery log in the app database, `shops`
    the shops `kvcache shop add` knows (None outside the service).
    """

    cache: Cache
    log: DeliveryLog
    clock: Callable[[], float] = field(default=time.time)
    shops: ShopRegistry | None = None

    @property
    def store(self) -> KVStore:
        return self.cache.kv
