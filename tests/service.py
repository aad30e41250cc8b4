"""A real uvicorn serving `build_app` on a free loopback port, and signed Shopify requests.

`running(settings)` starts uvicorn in a thread with its own event loop (the test's
loop drives it over HTTP with httpx, as Shopify would); `signed_headers` and
`deliver` build deliveries the way Shopify signs them.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
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

__all__ = [
    "SECRET",
    "ServeProcess",
    "Server",
    "deliver",
    "running",
    "serving",
    "settings_for",
    "signed_headers",
]

SECRET = "shpss_test_secret"
START_TIMEOUT = 20.0
TESTS = str(Path(__file__).resolve().parent)


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


class ServeProcess:
    """`python -m kvcache serve` in its own process group, on a free port.

    `environ` adds to the environment (settings, handler options); the tests
    directory is on PYTHONPATH so `--handlers webhook_handlers` imports.
    """

    def __init__(self, directory: Path, environ: Mapping[str, str], *, workers: int = 1) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.directory = directory
        self.log = directory / "serve.log"
        env = dict(os.environ)
        env.update(environ)
        env["PYTHONPATH"] = os.pathsep.join([TESTS, env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        self.command = [sys.executable, "-m", "kvcache", "serve", "--port", str(self.port)]
        self.command += ["--workers", str(workers), "--log-level", "warning"]
        self.env = env
        self.process: subprocess.Popen[bytes] | None = None
        self.returncode: int | None = None

    def start(self) -> ServeProcess:
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                self.command,
                cwd=self.directory,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        deadline = time.monotonic() + START_TIMEOUT * 3
        while True:
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"kvcache serve did not start:\n{self.log.read_text()[-3000:]}")
            time.sleep(0.1)

    def worker_pids(self) -> list[int]:
        """The uvicorn worker processes (children of the serve process)."""
        assert self.process is not None
        pid = self.process.pid
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        return [int(child) for child in children]

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                pass
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        self.returncode = process.wait()


@contextmanager
def serving(
    directory: Path, environ: Mapping[str, str], *, workers: int = 1
) -> Iterator[ServeProcess]:
    server = ServeProcess(directory, environ, workers=workers).start()
    try:
        yield server
    finally:
        server.stop()
