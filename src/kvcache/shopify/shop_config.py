"""The seed's shop configuration: a row per shop in the app database, cached for 24 hours.

`get(shop)` reads through the cache (`shop:{shop}:config`, 24 h; an unknown shop
is cached as None for a minute, so a burst of requests for it reads the database
once); `update(shop, **fields)` writes the row (created on the first update, the
other fields at their defaults), then invalidates the cached copy. The JSON API
speaks the seed's shape, `{"shopId", "shopName", "features": {"hcpEnabled",
"samplesEnabled", "maxSamplesPerRequest"}, "updatedAt"}`; `changes_from_json`
checks a body in that shape and names every bad field.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from .. import Cache
from . import keys
from .db import shop_config
from .deliveries import _iso as iso_time

__all__ = [
    "CONFIG_TTL",
    "MAX_SAMPLES_LIMIT",
    "ConfigFieldError",
    "ShopConfig",
    "ShopConfigRepository",
    "changes_from_json",
]

CONFIG_TTL = 24 * 3600
UNKNOWN_TTL = 60
MAX_SAMPLES_LIMIT = 10_000
MAX_TEXT = 255
DEFAULTS: dict[str, Any] = {
    "shop_id": None,
    "shop_name": None,
    "hcp_enabled": False,
    "samples_enabled": False,
    "max_samples_per_request": 0,
}
#: JSON path of each field in the seed's shape.
PATHS: dict[str, tuple[str, ...]] = {
    "shop_id": ("shopId",),
    "shop_name": ("shopName",),
    "hcp_enabled": ("features", "hcpEnabled"),
    "samples_enabled": ("features", "samplesEnabled"),
    "max_samples_per_request": ("features", "maxSamplesPerRequest"),
}


class ConfigFieldError(ValueError):
    """Bad configuration fields: `errors` is `[{"field": [json path], "message": ...}]`."""

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        self.errors = errors
        super().__init__("; ".join(f"{'.'.join(e['field'])}: {e['message']}" for e in errors))


@dataclass(frozen=True, slots=True)
class ShopConfig:
    shop: str
    shop_id: str | None
    shop_name: str | None
    hcp_enabled: bool
    samples_enabled: bool
    max_samples_per_request: int
    updated_at: float

    def as_json(self) -> dict[str, Any]:
        """The seed's shape."""
        return {
            "shopId": self.shop_id,
            "shopName": self.shop_name,
            "features": {
                "hcpEnabled": self.hcp_enabled,
                "samplesEnabled": self.samples_enabled,
                "maxSamplesPerRequest": self.max_samples_per_request,
            },
            "updatedAt": iso_time(self.updated_at),
        }


def _check(name: str, value: Any) -> str | None:
    """What is wrong with one field's value, or None."""
    if name in ("shop_id", "shop_name"):
        if value is not None and not isinstance(value, str):
            return "must be a string or null"
        if isinstance(value, str) and len(value) > MAX_TEXT:
            return f"must be at most {MAX_TEXT} characters"
    elif name in ("hcp_enabled", "samples_enabled"):
        if not isinstance(value, bool):
            return "must be true or false"
    elif name == "max_samples_per_request":
        if isinstance(value, bool) or not isinstance(value, int):
            return "must be a whole number"
        if not 0 <= value <= MAX_SAMPLES_LIMIT:
            return f"must be from 0 to {MAX_SAMPLES_LIMIT}"
    else:
        return "is not a configuration field"
    return None


def check_fields(fields: Mapping[str, Any]) -> dict[str, Any]:
    """The fields, or `ConfigFieldError` naming each bad one (by its JSON path)."""
    errors = []
    for name, value in fields.items():
        problem = _check(name, value)
        if problem is not None:
            errors.append({"field": list(PATHS.get(name, (name,))), "message": problem})
    if errors:
        raise ConfigFieldError(errors)
    return dict(fields)


def changes_from_json(body: Any) -> dict[str, Any]:
    """A PUT body in the seed's shape (any subset; `updatedAt` is ignored) as fields."""
    if not isinstance(body, dict):
        raise ConfigFieldError([{"field": [], "message": "the body must be a JSON object"}])
    fields: dict[str, Any] = {}
    errors: list[dict[str, Any]] = []
    by_path = {path: name for name, path in PATHS.items()}
    for key, value in body.items():
        if key == "updatedAt":
            continue
        if key == "features":
            if not isinstance(value, dict):
                errors.append({"field": ["features"], "message": "must be a JSON object"})
                continue
            for inner, inner_value in value.items():
                name = by_path.get(("features", inner))
                if name is None:
                    errors.append({"field": ["features", inner], "message": "is not a feature"})
                else:
                    fields[name] = inner_value
        elif (key,) in by_path:
            fields[by_path[(key,)]] = value
        else:
            errors.append({"field": [key], "message": "is not a configuration field"})
    try:
        check_fields(fields)
    except ConfigFieldError as bad:
        errors.extend(bad.errors)
    if errors:
        raise ConfigFieldError(errors)
    return fields


class ShopConfigRepository:
    """`await repo.get(shop)` (cached 24 h) and `await repo.update(shop, **fields)`."""

    def __init__(
        self, db: AsyncEngine, cache: Cache, *, clock: Callable[[], float] = time.time
    ) -> None:
        self.db = db
        self.cache = cache
        self._clock = clock

    async def get(self, shop: str) -> ShopConfig | None:
        """The shop's configuration, or None when it has none (cached for a minute)."""

        async def fetch() -> dict[str, Any] | None:
            async with self.db.connect() as conn:
                stmt = select(shop_config).where(shop_config.c.shop == shop)
                row = (await conn.execute(stmt)).first()
            if row is None:
                return None
            return {name: getattr(row, name) for name in ShopConfig.__slots__}

        cached = await self.cache.get_or_set(
            keys.shop_config_key(shop), fetch, ttl=CONFIG_TTL, negative_ttl=UNKNOWN_TTL, lock=True
        )
        return None if cached is None else _config(cached)

    async def update(self, shop: str, **fields: Any) -> ShopConfig:
        """Write the given fields (creating the row if need be), then drop the cached copy."""
        values = check_fields(fields)
        values["updated_at"] = self._clock()
        where = shop_config.c.shop == shop
        if not await self._execute(update(shop_config).where(where).values(**values)):
            try:
                await self._execute(insert(shop_config).values(shop=shop, **(DEFAULTS | values)))
            except IntegrityError:  # another writer created the row meanwhile
                await self._execute(update(shop_config).where(where).values(**values))
        async with self.db.connect() as conn:
            written = (await conn.execute(select(shop_config).where(where))).one()
        await self.invalidate(shop)
        return _config({name: getattr(written, name) for name in ShopConfig.__slots__})

    async def _execute(self, statement: Any) -> int:
        async with self.db.begin() as conn:
            return int((await conn.execute(statement)).rowcount)

    async def invalidate(self, shop: str) -> None:
        """The seed's invalidateShopConfig."""
        await self.cache.delete(keys.shop_config_key(shop))


def _config(values: Mapping[str, Any]) -> ShopConfig:
    data = dict(values)
    data["hcp_enabled"] = bool(data["hcp_enabled"])
    data["samples_enabled"] = bool(data["samples_enabled"])
    return ShopConfig(**data)
