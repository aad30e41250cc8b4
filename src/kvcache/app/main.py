"""`build_app(settings)`: the Starlette application of `kvcache serve`.

The lifespan opens the service (stores, database, handlers), keeps a small
housekeeping task (cache counters into the summed metrics and the store meter's
counts into the history every PUSH_EVERY seconds, the stored bytes sampled every
minute, the delivery log pruned every hour) and closes everything on shutdown.
`create_app()` is the factory uvicorn's worker processes call.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import time
from collections.abc import AsyncIterator, Callable

from starlette.applications import Starlette

from ..shopify._tasks import stop
from .admin_routes import admin_routes
from .api_routes import api_routes
from .cost_routes import cost_routes
from .dashboard_routes import dashboard_routes
from .metrics import Metrics
from .service import Service
from .settings import ENV_JSON, Settings, load_settings
from .state import State
from .usage import STORED_EVERY
from .webhook_routes import webhook_routes

__all__ = ["build_app", "create_app"]

logger = logging.getLogger(__name__)

PUSH_EVERY = 0.25
PRUNE_EVERY = 3600.0


async def _housekeeping(state: State) -> None:
    last_prune = last_sample = -PRUNE_EVERY
    while True:
        state.push_cache()
        state.service.record_meter()
        now = time.monotonic()
        if now - last_sample >= STORED_EVERY:
            last_sample = now
            try:
                await state.service.sample_stored()
            except Exception as exc:
                logger.warning("could not sample the stored bytes: %s", exc)
        if now - last_prune >= PRUNE_EVERY:
            last_prune = now
            try:
                removed = await state.service.prune()
                if removed:
                    logger.info("pruned %d delivery-log rows", removed)
            except Exception as exc:
                logger.warning("could not prune the delivery log: %s", exc)
        await asyncio.sleep(PUSH_EVERY)


def build_app(
    settings: Settings, *, clock: Callable[[], float] = time.time, freeze_gc: bool = False
) -> Starlette:
    """The ASGI app for `settings`; its stores open when the server starts it.

    `freeze_gc` (what `kvcache serve` runs with): once started, the process's objects
    are moved out of the garbage collector's reach (`gc.freeze`). A full collection
    otherwise walks every module, class and SQLAlchemy structure of the process
    (100-150 ms measured, once every few thousand deliveries), and every request in
    flight waits for it; after the freeze it walks only what requests left behind.
    """

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        service = await Service.open(settings, clock=clock)
        state = State(settings, service, Metrics(history=service.history))
        app.state.kvcache = state
        task = asyncio.create_task(_housekeeping(state))
        if freeze_gc:
            gc.collect()
            gc.freeze()
        try:
            yield
        finally:
            await stop(task)
            state.push_cache()
            await service.close()

    routes = [*webhook_routes(), *admin_routes(), *api_routes(), *cost_routes()]
    return Starlette(routes=[*routes, *dashboard_routes()], lifespan=lifespan)


def create_app() -> Starlette:
    """uvicorn's factory: settings from `kvcache serve` (or environment and kvcache.toml)."""
    text = os.environ.get(ENV_JSON)
    return build_app(Settings.from_json(text) if text else load_settings(), freeze_gc=True)
