"""A real uvicorn serving `build_app` on a free loopback port, and signed Shopify requests.

`running(settings)` starts uvicorn in a thread with its own event loop (the test's
loop drives it over HTTP with httpx, as Shopify would); `signed_headers` and
`deliver` build deliveries the way Shopify signs them.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from kvcache.app import Settings, build_app
from kvcache.shopify.webhooks import signed_headers as shopify_headers
from redis_server import free_port

__all__ = ["SECRET", "Server", "deliver", "running", "settings_for", "signed_headers"]

SECRET = "shpss_test_secret"
START_TIMEOUT = 20.0


def settings_for(directory: Path, **changes: Any) -> Settings:
    """Settings on files under `directory`: the SQLite store and the app database."""
    values: dict[str, Any] = {
        "api_secrets": (SECRET,),
        "store": f"sqlite:///{directory}/kv.sqlite3",
        "database_url": f"sqlite+aiosqlite:///{directory}/app.db",
    }
    values.update(changes)
    return Settings(**values)


class Server:
    """A started uvicorn; `url` is its address."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            build_app(settings),
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            lifespan="on",
            access_log=False,
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def start(self) -> Server:
        self.thread.start()
        deadline = time.monotonic() + START_TIMEOUT
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(START_TIMEOUT)


@contextmanager
def running(settings: Settings) -> Iterator[Server]:
    server = Server(settings).start()
    try:
        yield server
    finally:
        server.stop()


def signed_headers(
    body: bytes,
    topic: str,
    shop: str,
    *,
    webhook_id: str | None = None,
    secret: str = SECRET,
    extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    headers = shopify_headers(body, topic, shop, secret, webhook_id=webhook_id)
    headers.update(extra or {})
    return headers


async def deliver(
    client: httpx.AsyncClient,
    topic: str,
    shop: str,
    payload: Any,
    *,
    webhook_id: str | None = None,
    secret: str = SECRET,
    path: str = "/webhooks",
    extra: Mapping[str, str] | None = None,
) -> httpx.Response:
    body = json.dumps(payload).encode()
    headers = signed_headers(body, topic, shop, webhook_id=webhook_id, secret=secret, extra=extra)
    return await client.post(path, content=body, headers=headers)
