"""The shops kvcache serves, in the app database, and where each one's access token comes from.

A token is never stored in the clear: `kvcache shop add --token-env VAR` stores only
the variable's name (the service reads the token from its own environment), and
`--token-stdin` stores it encrypted with Fernet under `KVCACHE_SECRET_KEY` (refused
without one; a comma-separated list decrypts with any key and encrypts with the
first, for a rotation). `app/uninstalled` marks the shop uninstalled and deletes
the stored token, since Shopify has revoked it anyway.

Each registry keeps what it read for a few seconds (`ttl`), so the JSON API does
not query the database on every request; the registry that made a change drops
its copy at once, other processes see it within `ttl`.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from sqlalchemy import delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from ..errors import KVConfigError, ShopifyAuthError, ShopNotFound
from .admin import DEFAULT_API_VERSION
from .db import shops
from .webhooks import SHOP_DOMAIN

__all__ = ["SECRET_KEY_ENV", "ShopRecord", "ShopRegistry", "check_shop", "load_secret_key"]

SECRET_KEY_ENV = "KVCACHE_SECRET_KEY"
_VERSION = re.compile(r"\d{4}-(0[1-9]|1[0-2])|unstable")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,254}")
_URL = re.compile(r"https?://[^\s/?#]+(/[^\s]*)?")
MAX_TOKEN_CHARS = 1000
KEYGEN_HINT = (
    'make one with: python -c "from cryptography.fernet import Fernet; '
    'print(Fernet.generate_key().decode())"'
)


def check_shop(shop: Any) -> str:
    """A shop's permanent `*.myshopify.com` domain (it becomes part of cache keys)."""
    if not isinstance(shop, str) or not SHOP_DOMAIN.fullmatch(shop):
        raise ValueError(f"shop must be a *.myshopify.com domain in lower case, not {shop!r}")
    return shop


def load_secret_key(value: str | None) -> MultiFernet | None:
    """KVCACHE_SECRET_KEY as a Fernet (None when unset); a bad key is a KVConfigError."""
    if value is None or not value.strip():
        return None
    try:
        return MultiFernet([Fernet(part.strip()) for part in value.split(",") if part.strip()])
    except ValueError:
        raise KVConfigError(
            f"{SECRET_KEY_ENV} is not a Fernet key (32 url-safe base64-encoded bytes); "
            + KEYGEN_HINT
        ) from None


@dataclass(frozen=True, slots=True)
class ShopRecord:
    """One row of `shops`, without the token itself (`has_stored_token` says if there is one)."""

    shop: str
    api_version: str
    admin_url: str | None
    token_env: str | None
    has_stored_token: bool
    installed: bool
    added_at: float
    uninstalled_at: float | None

    @property
    def token_source(self) -> str:
        if self.has_stored_token:
            return "stored (encrypted)"
        if self.token_env:
            return f"env:{self.token_env}"
        return "none"

    def as_json(self) -> dict[str, Any]:
        return {
            "shop": self.shop,
            "apiVersion": self.api_version,
            "adminUrl": self.admin_url,
            "token": self.token_source,
            "installed": self.installed,
            "addedAt": self.added_at,
            "uninstalledAt": self.uninstalled_at,
        }


def _record(row: Any) -> ShopRecord:
    return ShopRecord(
        shop=row.shop,
        api_version=row.api_version,
        admin_url=row.admin_url,
        token_env=row.token_env,
        has_stored_token=row.token_ciphertext is not None,
        installed=bool(row.installed),
        added_at=row.added_at,
        uninstalled_at=row.uninstalled_at,
    )


class ShopRegistry:
    """Add, list, remove and uninstall shops; resolve a shop's access token."""

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        secret_key: str | None = None,
        environ: Mapping[str, str] | None = None,
        ttl: float = 5.0,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.engine = engine
        self._fernet = load_secret_key(secret_key)
        self._environ = os.environ if environ is None else environ
        self._ttl = ttl
        self._clock = clock
        self._monotonic = monotonic
        self._seen: dict[str, tuple[float, ShopRecord | None]] = {}

    def __repr__(self) -> str:
        return f"<ShopRegistry {self.engine.url.render_as_string(hide_password=True)!r}>"

    async def add(
        self,
        shop: str,
        *,
        token: str | None = None,
        token_env: str | None = None,
        api_version: str = DEFAULT_API_VERSION,
        admin_url: str | None = None,
    ) -> tuple[ShopRecord, bool]:
        """Add (or re-add: reinstall) a shop; returns the record and whether it is new."""
        check_shop(shop)
        if (token is None) == (token_env is None):
            raise ValueError("give exactly one of token (stored encrypted) and token_env")
        if not isinstance(api_version, str) or not _VERSION.fullmatch(api_version):
            raise ValueError(f"api_version must be YYYY-MM or unstable, not {api_version!r}")
        if admin_url is not None and not _URL.fullmatch(admin_url):
            raise ValueError(f"admin_url must be an http(s) URL, not {admin_url!r}")
        ciphertext = None
        if token is not None:
            ciphertext = self._encrypt(token)
        elif not _ENV_NAME.fullmatch(token_env or ""):
            raise ValueError(f"token_env must be an environment variable name, not {token_env!r}")
        values = {
            "api_version": api_version,
            "admin_url": admin_url,
            "token_env": token_env,
            "token_ciphertext": ciphertext,
            "installed": True,
            "uninstalled_at": None,
        }
        async with self.engine.begin() as conn:
            found = (await conn.execute(select(shops.c.shop).where(shops.c.shop == shop))).first()
            if found is None:
                stmt = insert(shops).values(shop=shop, added_at=self._clock(), **values)
                await conn.execute(stmt)
            else:
                await conn.execute(update(shops).where(shops.c.shop == shop).values(**values))
        self._seen.pop(shop, None)
        record = await self._read(shop)
        assert record is not None
        return record, found is None

    async def list(self) -> list[ShopRecord]:
        async with self.engine.connect() as conn:
            rows = (await conn.execute(select(shops).order_by(shops.c.shop))).all()
        return [_record(row) for row in rows]

    async def remove(self, shop: str) -> bool:
        """Forget the shop and its token; False if it was not there."""
        async with self.engine.begin() as conn:
            result = await conn.execute(delete(shops).where(shops.c.shop == shop))
        self._seen.pop(shop, None)
        return bool(result.rowcount)

    async def uninstall(self, shop: str) -> bool:
        """app/uninstalled: mark the shop uninstalled and delete its stored token."""
        async with self.engine.begin() as conn:
            result = await conn.execute(
                update(shops)
                .where(shops.c.shop == shop)
                .values(installed=False, token_ciphertext=None, uninstalled_at=self._clock())
            )
        self._seen.pop(shop, None)
        return bool(result.rowcount)

    async def get(self, shop: str) -> ShopRecord | None:
        """The shop's record (read at most every `ttl` seconds), or None."""
        now = self._monotonic()
        seen = self._seen.get(shop)
        if seen is not None and seen[0] > now:
            return seen[1]
        record = await self._read(shop)
        if len(self._seen) > 10_000:
            self._seen.clear()
        self._seen[shop] = (now + self._ttl, record)
        return record

    async def installed(self, shop: str) -> ShopRecord:
        """The record of an installed shop; `ShopNotFound` otherwise."""
        record = await self.get(shop)
        if record is None or not record.installed:
            raise ShopNotFound(shop, uninstalled=record is not None)
        return record

    async def access_token(self, record: ShopRecord) -> str:
        """The shop's token, decrypted or read from the named variable."""
        if record.token_env:
            token = self._environ.get(record.token_env)
            if not token:
                raise ShopifyAuthError(
                    f"the access token of {record.shop} is read from ${record.token_env}, "
                    "which is not set in the service's environment",
                    shop=record.shop,
                    status=401,
                )
            return token
        async with self.engine.connect() as conn:
            stmt = select(shops.c.token_ciphertext).where(shops.c.shop == record.shop)
            ciphertext = (await conn.execute(stmt)).scalar()
        if ciphertext is None:
            raise ShopifyAuthError(
                f"{record.shop} has no access token", shop=record.shop, status=401
            )
        if self._fernet is None:
            raise ShopifyAuthError(
                f"the access token of {record.shop} is encrypted and {SECRET_KEY_ENV} is not set",
                shop=record.shop,
                status=401,
            )
        try:
            return self._fernet.decrypt(bytes(ciphertext)).decode()
        except InvalidToken:
            raise ShopifyAuthError(
                f"the access token of {record.shop} does not decrypt with {SECRET_KEY_ENV}",
                shop=record.shop,
                status=401,
            ) from None

    def _encrypt(self, token: str) -> bytes:
        if not isinstance(token, str) or not token.strip():
            raise ValueError("the token is empty")
        token = token.strip()
        if len(token) > MAX_TOKEN_CHARS or any(ch.isspace() for ch in token):
            raise ValueError("the token must be one line without spaces")
        if self._fernet is None:
            raise KVConfigError(
                f"{SECRET_KEY_ENV} is not set: a token given on stdin is stored encrypted "
                f"with it ({KEYGEN_HINT}), or use --token-env VAR to store only a variable's name"
            )
        return self._fernet.encrypt(token.encode())

    async def _read(self, shop: str) -> ShopRecord | None:
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(shops).where(shops.c.shop == shop))).first()
        return None if row is None else _record(row)
