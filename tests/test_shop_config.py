"""Shop configuration and the shops registry on SQLite and on a real PostgreSQL.

PostgreSQL is the server tests/postgres_server.py starts (skipped without Debian's
`postgresql` package, never under KVCACHE_REQUIRE_POSTGRES=1). Each test gets a
fresh database on it.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import insert, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

import kvcache
from backends import FakeClock
from kvcache import Cache, KVConfigError, ShopifyAuthError, ShopNotFound
from kvcache.shopify import keys
from kvcache.shopify.db import migrate, open_database, shop_config, shops
from kvcache.shopify.shop_config import ConfigFieldError, ShopConfigRepository, changes_from_json
from kvcache.shopify.shops import ShopRegistry

SHOP = "demo.myshopify.com"


@pytest.fixture(params=["sqlite", "postgresql"])
async def engine(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path}/app.db"
    else:
        server: str = request.getfixturevalue("postgres_url")
        name = f"t_{uuid.uuid4().hex[:12]}"
        admin = open_database(server)
        async with admin.connect() as conn:
            await conn.execution_options(isolation_level="AUTOCOMMIT")
            await conn.execute(text(f"CREATE DATABASE {name}"))
        await admin.dispose()
        url = server.rsplit("/", 1)[0] + f"/{name}"
    made = open_database(url)
    await migrate(made)
    yield made
    await made.dispose()


@pytest.fixture
async def cache(clock: FakeClock) -> AsyncIterator[Cache]:
    async with kvcache.open_kv("memory://", namespace="CACHE", clock=clock) as kv:
        yield Cache(kv, family=keys.family)


async def test_an_unknown_shop_has_no_config_and_that_is_cached_briefly(
    engine: AsyncEngine, cache: Cache, clock: FakeClock
) -> None:
    repo = ShopConfigRepository(engine, cache, clock=clock)
    assert await repo.get(SHOP) is None
    async with engine.begin() as conn:  # written behind the repository's back
        row = {"hcp_enabled": True, "samples_enabled": False, "max_samples_per_request": 3}
        await conn.execute(insert(shop_config).values(shop=SHOP, updated_at=clock(), **row))
    assert await repo.get(SHOP) is None  # the negative entry still answers
    clock.advance(61)
    config = await repo.get(SHOP)
    assert config is not None and config.hcp_enabled and config.max_samples_per_request == 3


async def test_update_creates_writes_and_invalidates(
    engine: AsyncEngine, cache: Cache, clock: FakeClock
) -> None:
    repo = ShopConfigRepository(engine, cache, clock=clock)
    assert await repo.get(SHOP) is None
    made = await repo.update(SHOP, shop_name="Demo", samples_enabled=True)
    assert made.as_json() == {
        "shopId": None,
        "shopName": "Demo",
        "features": {"hcpEnabled": False, "samplesEnabled": True, "maxSamplesPerRequest": 0},
        "updatedAt": made.as_json()["updatedAt"],
    }
    assert made.as_json()["updatedAt"].endswith("Z")
    assert await repo.get(SHOP) == made  # the negative entry was invalidated
    clock.advance(5)
    changed = await repo.update(SHOP, max_samples_per_request=12, shop_id="gid://shopify/Shop/1")
    assert changed.shop_name == "Demo" and changed.max_samples_per_request == 12
    assert changed.updated_at == made.updated_at + 5
    assert await repo.get(SHOP) == changed


async def test_get_is_cached_for_24_hours(
    engine: AsyncEngine, cache: Cache, clock: FakeClock
) -> None:
    repo = ShopConfigRepository(engine, cache, clock=clock)
    await repo.update(SHOP, shop_name="Before")
    assert (await repo.get(SHOP)) is not None
    async with engine.begin() as conn:
        await conn.execute(shop_config.update().values(shop_name="After"))
    clock.advance(24 * 3600 - 1)
    cached = await repo.get(SHOP)
    assert cached is not None and cached.shop_name == "Before"
    clock.advance(2)
    fresh = await repo.get(SHOP)
    assert fresh is not None and fresh.shop_name == "After"


async def test_bad_fields_write_nothing(engine: AsyncEngine, cache: Cache) -> None:
    repo = ShopConfigRepository(engine, cache)
    with pytest.raises(ConfigFieldError) as caught:
        await repo.update(SHOP, shop_name="ok", max_samples_per_request=-1)
    assert caught.value.errors == [
        {"field": ["features", "maxSamplesPerRequest"], "message": "must be from 0 to 10000"}
    ]
    with pytest.raises(ConfigFieldError):
        await repo.update(SHOP, colour="blue")
    async with engine.connect() as conn:
        assert (await conn.execute(select(shop_config))).all() == []


async def test_concurrent_first_updates_make_one_row(engine: AsyncEngine, cache: Cache) -> None:
    repo = ShopConfigRepository(engine, cache)
    await asyncio.gather(*(repo.update(SHOP, max_samples_per_request=n) for n in range(5)))
    async with engine.connect() as conn:
        rows = (await conn.execute(select(shop_config))).all()
    assert len(rows) == 1 and rows[0].max_samples_per_request in range(5)


def test_changes_from_json_names_every_bad_field() -> None:
    body = {
        "shopName": 3,
        "features": {"hcpEnabled": "yes", "maxSamplesPerRequest": True, "colour": 1},
        "plan": "x",
        "updatedAt": "ignored",
    }
    with pytest.raises(ConfigFieldError) as caught:
        changes_from_json(body)
    assert sorted(tuple(e["field"]) for e in caught.value.errors) == [
        ("features", "colour"),
        ("features", "hcpEnabled"),
        ("features", "maxSamplesPerRequest"),
        ("plan",),
        ("shopName",),
    ]
    assert changes_from_json({"features": {"samplesEnabled": False}}) == {"samples_enabled": False}
    with pytest.raises(ConfigFieldError):
        changes_from_json([1])


async def test_registry_stores_a_stdin_token_encrypted(engine: AsyncEngine) -> None:
    key = Fernet.generate_key().decode()
    registry = ShopRegistry(engine, secret_key=key)
    record, created = await registry.add(SHOP, token="shpat_plain_secret", api_version="2024-10")
    assert created and record.token_source == "stored (encrypted)"
    assert "shpat_plain_secret" not in repr(record) + repr(registry) + str(record.as_json())
    async with engine.connect() as conn:
        stored = (await conn.execute(select(shops.c.token_ciphertext))).scalar()
    assert stored is not None and b"shpat_plain_secret" not in bytes(stored)
    assert await registry.access_token(await registry.installed(SHOP)) == "shpat_plain_secret"
    # A rotation: a new key first, the old one still decrypts.
    rotated = ShopRegistry(engine, secret_key=f"{Fernet.generate_key().decode()},{key}")
    assert await rotated.access_token(await rotated.installed(SHOP)) == "shpat_plain_secret"
    wrong = ShopRegistry(engine, secret_key=Fernet.generate_key().decode())
    with pytest.raises(ShopifyAuthError, match="does not decrypt"):
        await wrong.access_token(await wrong.installed(SHOP))


async def test_registry_refuses_a_stored_token_without_a_key(engine: AsyncEngine) -> None:
    registry = ShopRegistry(engine)
    with pytest.raises(KVConfigError, match="KVCACHE_SECRET_KEY is not set"):
        await registry.add(SHOP, token="shpat_x")
    with pytest.raises(KVConfigError, match="not a Fernet key"):
        ShopRegistry(engine, secret_key="not-a-key")
    assert await registry.list() == []


async def test_registry_reads_a_named_variable(engine: AsyncEngine) -> None:
    registry = ShopRegistry(engine, environ={"DEMO_TOKEN": "shpat_from_env"})
    record, _ = await registry.add(SHOP, token_env="DEMO_TOKEN")
    assert record.token_source == "env:DEMO_TOKEN"
    assert await registry.access_token(record) == "shpat_from_env"
    other = ShopRegistry(engine, environ={})
    with pytest.raises(ShopifyAuthError, match=r"\$DEMO_TOKEN"):
        await other.access_token(record)
    with pytest.raises(ValueError, match="token_env"):
        await registry.add(SHOP, token_env="NOT A NAME")


async def test_uninstall_marks_the_shop_and_deletes_its_token(engine: AsyncEngine) -> None:
    registry = ShopRegistry(engine, secret_key=Fernet.generate_key().decode())
    await registry.add(SHOP, token="shpat_x")
    assert await registry.uninstall(SHOP)
    with pytest.raises(ShopNotFound) as caught:
        await registry.installed(SHOP)
    assert caught.value.uninstalled
    (record,) = await registry.list()
    assert not record.installed and not record.has_stored_token and record.uninstalled_at
    _, created = await registry.add(SHOP, token="shpat_new")  # a reinstall
    assert not created and (await registry.installed(SHOP)).installed
    assert await registry.remove(SHOP) and not await registry.remove(SHOP)
    with pytest.raises(ShopNotFound):
        await registry.installed(SHOP)


@pytest.mark.parametrize(
    ("shop", "options", "match"),
    [
        ("Demo.myshopify.com", {"token_env": "T"}, "myshopify.com"),
        ("demo.example.com", {"token_env": "T"}, "myshopify.com"),
        (SHOP, {}, "exactly one"),
        (SHOP, {"token_env": "T", "api_version": "2025-13"}, "api_version"),
        (SHOP, {"token_env": "T", "admin_url": "ftp://x"}, "admin_url"),
    ],
)
async def test_registry_refuses_bad_input(
    engine: AsyncEngine, shop: str, options: dict[str, str], match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        await ShopRegistry(engine).add(shop, **options)
