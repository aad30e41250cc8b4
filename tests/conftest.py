"""Fixtures shared by every test: a fake clock and stores on each backend.

`make_store` is an async factory parametrized over `backends.BACKENDS`; each test
using it runs once per backend and every store it opened is closed afterwards.
`make_sync_store` / `skv` are the same for `kvcache.sync` stores.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

import kvcache.sync
from backends import (
    BACKENDS,
    SHARED_BACKENDS,
    Backend,
    FakeClock,
    StoreFactory,
    SyncStoreFactory,
)
from kvcache import KVStore
from miniflare import miniflare_rest  # noqa: F401
from postgres_server import fresh_postgres_database, postgres_url  # noqa: F401
from redis_server import durable_redis, redis_cluster_url, redis_server, redis_url  # noqa: F401


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(params=BACKENDS, ids=[backend.id for backend in BACKENDS])
def backend(request: pytest.FixtureRequest) -> Backend:
    param: Backend = request.param
    return param


@pytest.fixture(params=SHARED_BACKENDS, ids=[backend.id for backend in SHARED_BACKENDS])
def shared_url(request: pytest.FixtureRequest) -> str:
    """A store URL whose stores share data across processes, fresh for this test."""
    param: Backend = request.param
    return param.url(request)


@pytest.fixture
def store_url(backend: Backend, request: pytest.FixtureRequest) -> str:
    """A store URL on the current backend, fresh for this test."""
    return backend.url(request)


@pytest.fixture
async def make_store(
    backend: Backend, store_url: str, clock: FakeClock
) -> AsyncIterator[StoreFactory]:
    factory = StoreFactory(backend, store_url, clock)
    try:
        yield factory
    finally:
        await factory.aclose()


@pytest.fixture
async def kv(make_store: StoreFactory) -> KVStore:
    """One store in a fresh namespace, on the fake clock."""
    return await make_store()


@pytest.fixture
def make_sync_store(store_url: str, clock: FakeClock) -> Iterator[SyncStoreFactory]:
    factory = SyncStoreFactory(store_url, clock)
    try:
        yield factory
    finally:
        factory.close()


@pytest.fixture
def skv(make_sync_store: SyncStoreFactory) -> kvcache.sync.KVStore:
    """One sync store in a fresh namespace, on the fake clock."""
    return make_sync_store()


@pytest.fixture(params=["sqlite", "postgresql"])
async def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty app database: a SQLite file, then a fresh database on a real PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path}/app.db"
    server_url: str = request.getfixturevalue("postgres_url")
    return await fresh_postgres_database(server_url)
