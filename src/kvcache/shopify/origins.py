"""The origins behind the service's cache: each shop's Admin API and the shop configuration.

`Origins` turns a shop's record (`ShopRegistry`) into one `AdminClient` and
`CustomerRepository` per shop, all on one shared HTTP pool, and rebuilds them when
the record changes (a re-added shop, a new token). An unknown or uninstalled shop
raises `ShopNotFound`; a token that cannot be had, `ShopifyAuthError`.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine

from .. import Cache
from .admin import AdminClient
from .customers import CustomerRepository
from .shop_config import ShopConfigRepository
from .shops import ShopRecord, ShopRegistry

__all__ = ["Origins"]

MAX_CONNECTIONS = 100


class Origins:
    """Customers per shop, the shop configuration, and the shops; `aclose()` at the end."""

    def __init__(
        self,
        engine: AsyncEngine,
        cache: Cache,
        shops: ShopRegistry,
        *,
        timeout: float = 10.0,
        admin_options: dict[str, Any] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.shops = shops
        self.cache = cache
        self.config = ShopConfigRepository(engine, cache, clock=clock)
        self._http = httpx.AsyncClient(
            timeout=timeout, limits=httpx.Limits(max_connections=MAX_CONNECTIONS)
        )
        self._options = dict(admin_options or {})
        self._repos: dict[str, tuple[tuple[Any, ...], CustomerRepository]] = {}
        self._tokens: dict[str, tuple[ShopRecord, str]] = {}

    def __repr__(self) -> str:
        return f"<Origins shops={len(self._repos)}>"

    async def customers(self, shop: str) -> CustomerRepository:
        """The repository of an installed shop."""
        record = await self.shops.installed(shop)
        token = await self._token(record)
        fingerprint = (
            record.api_version,
            record.admin_url,
            hashlib.sha256(token.encode()).hexdigest(),
        )
        known = self._repos.get(shop)
        if known is not None and known[0] == fingerprint:
            return known[1]
        admin = AdminClient(
            shop,
            token,
            api_version=record.api_version,
            admin_url=record.admin_url,
            http=self._http,
            **self._options,
        )
        repo = CustomerRepository(admin, self.cache)
        self._repos[shop] = (fingerprint, repo)
        return repo

    async def _token(self, record: ShopRecord) -> str:
        """The shop's token, read again whenever the registry read the record again."""
        known = self._tokens.get(record.shop)
        if known is not None and known[0] is record:
            return known[1]
        token = await self.shops.access_token(record)
        self._tokens[record.shop] = (record, token)
        return token

    def forget(self, shop: str) -> None:
        """Drop a shop's client (it uninstalled, or was removed)."""
        self._repos.pop(shop, None)
        self._tokens.pop(shop, None)

    async def aclose(self) -> None:
        self._repos.clear()
        self._tokens.clear()
        await self._http.aclose()
