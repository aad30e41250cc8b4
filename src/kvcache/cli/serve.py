"""`kvcache serve`: the webhook service on uvicorn, in one process or `--workers N`.

Before any worker starts, the settings are checked (a missing secret or a bad
handlers module is one line on stderr), the database schema is brought up to
date once, and a Prometheus multiprocess directory is made so that /metrics and
/api/cache/stats answer the sum over all workers. Workers read the resolved
settings from the environment (`KVCACHE_SERVE_SETTINGS`).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

import click

from ..errors import KVError
from ._errors import fail
from ._target import Choices, pass_choices

__all__ = ["serve"]

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


@contextmanager
def _metrics_directory() -> Iterator[str]:
    """The multiprocess directory: the user's PROMETHEUS_MULTIPROC_DIR, or a fresh one."""
    given = os.environ.get(MULTIPROC_ENV)
    if given:
        os.makedirs(given, exist_ok=True)
        yield given
        return
    made = tempfile.mkdtemp(prefix="kvcache-metrics-")
    os.environ[MULTIPROC_ENV] = made
    try:
        yield made
    finally:
        os.environ.pop(MULTIPROC_ENV, None)
        shutil.rmtree(made, ignore_errors=True)


def _stop(signum: int, frame: object) -> None:
    """SIGTERM after uvicorn's graceful shutdown (it re-raises the signal it caught)."""
    raise SystemExit(0)


def _prepare(store: str | None, config: str | None, handlers: tuple[str, ...]) -> str:
    """Checked settings as JSON; the schema migrated. Raises a one-line ClickException."""
    from ..app.service import load_handlers
    from ..app.settings import load_settings
    from ..shopify.db import migrate, open_database
    from ..shopify.shops import load_secret_key
    from ..shopify.webhooks import Webhooks

    async def upgrade(url: str) -> None:
        engine = open_database(url)
        try:
            await migrate(engine)
        finally:
            await engine.dispose()

    try:
        settings = load_settings(config, store=store)
        settings = settings.replace(handlers=settings.handlers + handlers)
        load_handlers(Webhooks(), settings.handlers)
        load_secret_key(settings.secret_key)
        asyncio.run(upgrade(settings.database_url))
    except (KVError, ValueError, OSError) as exc:
        raise fail(str(exc)) from None
    except Exception as exc:  # the database driver's own errors (connection refused, ...)
        raise fail(f"the app database does not answer: {exc}") from None
    return settings.to_json()


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8787, show_default=True, type=click.IntRange(0, 65535))
@click.option(
    "--workers", default=1, show_default=True, type=click.IntRange(1, 64), help="Processes."
)
@click.option("--config", metavar="FILE", help="Settings file [default: ./kvcache.toml if any].")
@click.option(
    "--handlers",
    metavar="MODULE",
    multiple=True,
    help="Module whose register(webhooks) adds handlers; repeatable.",
)
@click.option(
    "--log-level",
    default="info",
    show_default=True,
    type=click.Choice(["critical", "error", "warning", "info", "debug"]),
)
@pass_choices
def serve(
    choices: Choices,
    host: str,
    port: int,
    workers: int,
    config: str | None,
    handlers: tuple[str, ...],
    log_level: str,
) -> None:
    """Serve Shopify webhooks, /metrics and the admin API on uvicorn."""
    # Handlers modules are found from the working directory, as uvicorn's --app-dir does.
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    with _metrics_directory():
        from ..app.settings import ENV_JSON

        # `kvcache --store URL serve` wins over KVCACHE_STORE and kvcache.toml.
        os.environ[ENV_JSON] = _prepare(choices.store, config, handlers)
        import uvicorn

        # uvicorn restores this handler and re-raises SIGTERM once it has shut down; the
        # handler turns it into SystemExit, so the metrics directory above is removed.
        previous = signal.signal(signal.SIGTERM, _stop)
        try:
            uvicorn.run(
                "kvcache.app.main:create_app",
                factory=True,
                host=host,
                port=port,
                workers=workers,
                log_level=log_level,
                access_log=False,
                timeout_graceful_shutdown=10,
            )
        finally:
            signal.signal(signal.SIGTERM, previous)
            os.environ.pop(ENV_JSON, None)
