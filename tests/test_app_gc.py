"""`kvcache serve`'s workers freeze the garbage collector once started; `build_app` does not."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from pathlib import Path

import pytest

from kvcache.app import Settings, build_app, create_app
from kvcache.app.settings import ENV_JSON


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        api_secrets=("s",),
        store=f"sqlite:///{tmp_path}/kv.sqlite3",
        database_url=f"sqlite+aiosqlite:///{tmp_path}/app.db",
    )


@pytest.fixture(autouse=True)
def unfrozen() -> Iterator[None]:
    gc.unfreeze()
    yield
    gc.unfreeze()  # the rest of the test run collects as usual


async def test_the_factory_freezes_once_the_service_is_open(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ENV_JSON, settings.to_json())
    app = create_app()
    assert gc.get_freeze_count() == 0
    async with app.router.lifespan_context(app):
        assert gc.get_freeze_count() > 0  # the open stores and engine among them


async def test_build_app_alone_leaves_the_collector_as_it_is(settings: Settings) -> None:
    app = build_app(settings)
    async with app.router.lifespan_context(app):
        assert gc.get_freeze_count() == 0
