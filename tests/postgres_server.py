"""A real PostgreSQL server for the tests: initdb in a temporary directory, a free port.

Debian's `postgresql` package puts the binaries under /usr/lib/postgresql/<version>/bin.
PostgreSQL refuses to run as root, so as root the server runs as the `postgres`
user (`runuser`). Without the binaries the tests skip with the install command,
unless KVCACHE_REQUIRE_POSTGRES=1 (CI), where they fail.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from redis_server import free_port

__all__ = ["PostgresServer", "fresh_postgres_database", "postgres_url"]

REQUIRE_ENV = "KVCACHE_REQUIRE_POSTGRES"
INSTALL_HINT = "PostgreSQL not found: apt-get install postgresql"
START_TIMEOUT = 30.0
USER = "kvcache"


def find_bin() -> Path:
    """The directory of initdb and postgres; skip (or fail under KVCACHE_REQUIRE_POSTGRES=1)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    path = shutil.which("initdb")
    if found:
        return Path(found[-1]).parent
    if path is not None:
        return Path(path).parent
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(f"{INSTALL_HINT} ({REQUIRE_ENV}=1 forbids skipping)")
    pytest.skip(INSTALL_HINT)


class PostgresServer:
    """One postgres process with trust authentication on 127.0.0.1, data in a temp dir."""

    def __init__(self) -> None:
        self.bin = find_bin()
        self.port = free_port()
        self.directory = Path(tempfile.mkdtemp(prefix="kvcache-pg-"))
        self.data = self.directory / "data"
        self.process: subprocess.Popen[bytes] | None = None
        self.prefix: list[str] = []
        if os.geteuid() == 0:
            runuser = shutil.which("runuser")
            try:
                owner = pwd.getpwnam("postgres")
            except KeyError:
                pytest.fail("running as root needs the postgres user (apt-get install postgresql)")
            if runuser is None:
                pytest.fail("running as root needs runuser (util-linux) to start PostgreSQL")
            os.chown(self.directory, owner.pw_uid, owner.pw_gid)
            self.prefix = [runuser, "-u", "postgres", "--"]

    @property
    def url(self) -> str:
        return f"postgresql+asyncpg://{USER}@127.0.0.1:{self.port}/postgres"

    def start(self) -> PostgresServer:
        subprocess.run(
            [*self.prefix, str(self.bin / "initdb"), "-D", str(self.data), "-U", USER]
            + ["--auth=trust", "--encoding=UTF8", "--no-sync"],
            check=True,
            capture_output=True,
            timeout=120,
        )
        log = open(self.directory / "postgres.log", "wb")  # noqa: SIM115 - the server's stderr
        self.process = subprocess.Popen(
            [*self.prefix, str(self.bin / "postgres"), "-D", str(self.data)]
            + ["-p", str(self.port), "-h", "127.0.0.1", "-k", str(self.directory)]
            + ["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "max_connections=200"],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        log.close()
        deadline = time.monotonic() + START_TIMEOUT
        ready = [str(self.bin / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port)]
        while subprocess.run(ready, capture_output=True).returncode != 0:
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                tail = (self.directory / "postgres.log").read_text()[-2000:]
                raise RuntimeError(f"postgres on port {self.port} did not start:\n{tail}")
            time.sleep(0.1)
        return self

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.terminate()  # SIGTERM: "smart" shutdown
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        shutil.rmtree(self.directory, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    server = PostgresServer().start()
    try:
        yield server.url
    finally:
        server.stop()


async def fresh_postgres_database(server_url: str) -> str:
    """A new, empty database on the test PostgreSQL server; its URL."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_async_engine(server_url, isolation_level="AUTOCOMMIT")
    try:
        async with admin.connect() as conn:
            await conn.execute(text(f'CREATE DATABASE "{name}"'))
    finally:
        await admin.dispose()
    return server_url.rsplit("/", 1)[0] + f"/{name}"
