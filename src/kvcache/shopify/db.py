"""The app's SQL database (SQLAlchemy 2, async): tables and versioned schema upgrades.

`sqlite+aiosqlite:///.kvcache/app.db` by default (WAL, a busy timeout, so several
worker processes can write), PostgreSQL through `postgresql+asyncpg://`. The
schema has a version in `kvcache_schema`; `migrate()` applies every step above
the stored one in one transaction at start-up, so an upgrade needs no manual step.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy import (
    Boolean,
    Column,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    event,
    select,
    text,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from .. import KVConfigError

__all__ = [
    "DEFAULT_DATABASE_URL",
    "SCHEMA_VERSION",
    "data_requests",
    "deliveries",
    "metadata",
    "metric_minutes",
    "migrate",
    "open_database",
    "shop_config",
    "shops",
]

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///.kvcache/app.db"
SQLITE_BUSY_MS = 30_000

metadata = MetaData()

schema = Table("kvcache_schema", metadata, Column("version", Integer, nullable=False))

#: One row per (shop, webhook id) that passed the HMAC check; `body` only while failed.
deliveries = Table(
    "webhook_deliveries",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("shop", String(255), nullable=False),
    Column("webhook_id", String(255), nullable=False),
    Column("topic", String(255), nullable=False),
    Column("event_id", String(255)),
    Column("api_version", String(32)),
    Column("triggered_at", String(64)),
    Column("received_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("outcome", String(16), nullable=False),
    Column("duration_ms", Float),
    Column("error", Text),
    Column("body_sha256", String(64)),
    Column("body", LargeBinary),
    # The customer (or other resource) id the delivery is about: customers/redact
    # deletes that customer's rows.
    Column("subject", String(64)),
    UniqueConstraint("shop", "webhook_id", name="uq_webhook_deliveries_shop_webhook"),
    Index("ix_webhook_deliveries_received", "received_at"),
    Index("ix_webhook_deliveries_shop_subject", "shop", "subject"),
)

#: customers/data_request deliveries: what the merchant must answer within 30 days.
data_requests = Table(
    "customer_data_requests",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("shop", String(255), nullable=False),
    Column("webhook_id", String(255), nullable=False),
    Column("request_id", String(64)),
    Column("customer_id", String(64)),
    Column("email", String(320)),
    Column("orders_requested", Text),
    Column("received_at", Float, nullable=False),
    UniqueConstraint("shop", "webhook_id", name="uq_customer_data_requests_shop_webhook"),
)


#: The shops `kvcache shop add` knows. A token is either named (`token_env`: the
#: variable the service reads it from) or stored encrypted with KVCACHE_SECRET_KEY.
shops = Table(
    "shops",
    metadata,
    Column("shop", String(255), primary_key=True),
    Column("api_version", String(32), nullable=False),
    Column("admin_url", Text),
    Column("token_env", String(255)),
    Column("token_ciphertext", LargeBinary),
    Column("installed", Boolean, nullable=False),
    Column("added_at", Float, nullable=False),
    Column("uninstalled_at", Float),
)

#: The seed's ShopConfig, one row per shop.
shop_config = Table(
    "shop_config",
    metadata,
    Column("shop", String(255), primary_key=True),
    Column("shop_id", String(255)),
    Column("shop_name", String(255)),
    Column("hcp_enabled", Boolean, nullable=False),
    Column("samples_enabled", Boolean, nullable=False),
    Column("max_samples_per_request", Integer, nullable=False),
    Column("updated_at", Float, nullable=False),
)


#: Per-minute counters behind the dashboard's charts and the cost projection: every
#: worker adds its growth, so a row is the sum over workers. `labels` is canonical JSON.
metric_minutes = Table(
    "metric_minutes",
    metadata,
    Column("minute", Integer, primary_key=True),
    Column("series", String(64), primary_key=True),
    Column("labels", String(512), primary_key=True),
    Column("value", Float, nullable=False),
    Index("ix_metric_minutes_series_minute", "series", "minute"),
)


async def _v1(conn: AsyncConnection) -> None:
    await conn.run_sync(lambda sync: metadata.create_all(sync, tables=[deliveries, data_requests]))


async def _v2(conn: AsyncConnection) -> None:
    await conn.run_sync(lambda sync: metadata.create_all(sync, tables=[shops, shop_config]))


async def _v3(conn: AsyncConnection) -> None:
    await conn.run_sync(lambda sync: metadata.create_all(sync, tables=[metric_minutes]))


#: (version, step): each step takes the schema from version - 1 to version.
MIGRATIONS: tuple[tuple[int, Callable[[AsyncConnection], Awaitable[None]]], ...] = (
    (1, _v1),
    (2, _v2),
    (3, _v3),
)
SCHEMA_VERSION = MIGRATIONS[-1][0]


async def migrate(engine: AsyncEngine) -> int:
    """Bring the schema to SCHEMA_VERSION; returns the version found before."""
    async with engine.begin() as conn:
        await conn.run_sync(lambda sync: schema.create(sync, checkfirst=True))
        if engine.dialect.name == "postgresql":
            # Two processes starting together: the second waits here for the first.
            await conn.execute(text("LOCK TABLE kvcache_schema IN EXCLUSIVE MODE"))
        found = (await conn.execute(select(schema.c.version))).scalar()
        current = int(found) if found is not None else 0
        if current > SCHEMA_VERSION:
            raise KVConfigError(
                f"the database's schema is version {current}, newer than this kvcache's "
                f"{SCHEMA_VERSION}: upgrade kvcache"
            )
        for version, step in MIGRATIONS:
            if version > current:
                await step(conn)
        if found is None:
            await conn.execute(schema.insert().values(version=SCHEMA_VERSION))
        elif current < SCHEMA_VERSION:
            await conn.execute(schema.update().values(version=SCHEMA_VERSION))
    return current


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_MS}")
    cursor.close()


def open_database(url: str | None = None) -> AsyncEngine:
    """An engine for the app database; the directory of a SQLite file is created."""
    text_url = url or DEFAULT_DATABASE_URL
    try:
        parsed = make_url(text_url)
    except ArgumentError as exc:
        raise KVConfigError(f"KVCACHE_DATABASE_URL {text_url!r} is not a SQLAlchemy URL") from exc
    backend = parsed.get_backend_name()
    if backend not in ("sqlite", "postgresql"):
        raise KVConfigError(
            f"database {parsed.render_as_string(hide_password=True)!r}: use sqlite+aiosqlite:/// "
            "or postgresql+asyncpg://"
        )
    options: dict[str, Any] = {}
    if backend == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            directory = os.path.dirname(parsed.database)
            if directory:
                os.makedirs(directory, exist_ok=True)
        options["connect_args"] = {"timeout": SQLITE_BUSY_MS / 1000}
    else:
        options["pool_pre_ping"] = True
    try:
        engine = create_async_engine(parsed, **options)
    except (ArgumentError, ImportError) as exc:
        raise KVConfigError(
            f"database {parsed.render_as_string(hide_password=True)!r} cannot be opened: {exc}; "
            "pip install 'kvcache[service]'"
        ) from exc
    if backend == "sqlite":
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    return engine
