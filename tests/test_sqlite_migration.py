"""Files made by kvcache 0.1 (schema version 1) open with today's code, upgraded in place.

`make_v1_file` builds the file exactly as version 1's `SQLiteStore._connect` and
`_put` did (commit 59f9e24): WAL, the same DDL with its `kv_expiration` index,
user_version 1, rows written with the same INSERT.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import sqlite3
from multiprocessing.synchronize import Barrier
from pathlib import Path
from typing import Any

import pytest

import kvcache
from backends import FakeClock
from kvcache import KVBackendError, KVEntry
from kvcache.kv import sqlite as sqlite_backend
from processes import start_and_join
from test_sqlite_store import rows, url_for

# Version 1's schema, verbatim.
V1_SCHEMA = """
CREATE TABLE IF NOT EXISTS kv (
    namespace  TEXT NOT NULL,
    key        TEXT NOT NULL,
    value      BLOB NOT NULL,
    expiration INTEGER,
    metadata   TEXT,
    PRIMARY KEY (namespace, key)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS kv_expiration ON kv (expiration) WHERE expiration IS NOT NULL;
"""
V1_PUT = (
    "INSERT OR REPLACE INTO kv (namespace, key, value, expiration, metadata) VALUES (?, ?, ?, ?, ?)"
)
OPENERS = 4


def v1_rows(now: float) -> list[tuple[str, str, bytes, int | None, str | None]]:
    """Rows of several namespaces: text, binary, with and without expiry and metadata."""
    later, gone = int(now) + 3600, int(now) - 10
    out: list[tuple[str, str, bytes, int | None, str | None]] = [
        ("app", "plain", b"hello", None, None),
        ("app", "binary", bytes(range(256)), None, None),
        ("app", "meta", b'{"a":1}', later, '{"owner":"x","n":[1,2]}'),
        ("app", "expired", b"old", gone, None),
        ("other", "plain", "héllo ✓".encode(), later, None),
    ]
    out += [
        ("bulk", f"k{i:04d}", f"v{i}".encode(), later if i % 2 else None, None) for i in range(500)
    ]
    out += [("bulk", f"gone{i:04d}", b"x", gone, None) for i in range(300)]
    return out


def make_v1_file(path: Path, now: float) -> None:
    """A store file as version 1's code left it."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL").fetchone()
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("BEGIN IMMEDIATE")
    for statement in V1_SCHEMA.split(";"):
        if statement.strip():
            conn.execute(statement)
    conn.execute("PRAGMA user_version = 1")
    conn.execute("COMMIT")
    conn.executemany(V1_PUT, v1_rows(now))
    conn.close()


def schema_of(path: Path) -> tuple[int, list[str]]:
    conn = sqlite3.connect(path)
    try:
        version: int = conn.execute("PRAGMA user_version").fetchone()[0]
        names = [row[0] for row in conn.execute("SELECT name FROM sqlite_master ORDER BY name")]
    finally:
        conn.close()
    return version, names


def all_rows(path: Path) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute("SELECT * FROM kv ORDER BY namespace, key").fetchall()
    finally:
        conn.close()


@pytest.fixture
def v1_file(tmp_path: Path, clock: FakeClock) -> Path:
    path = tmp_path / "v1.sqlite3"
    make_v1_file(path, clock())
    assert schema_of(path) == (1, ["kv", "kv_expiration"])
    return path


async def test_a_version_1_file_is_upgraded_on_open_and_keeps_every_row(
    v1_file: Path, clock: FakeClock
) -> None:
    before = all_rows(v1_file)
    async with kvcache.open_kv(url_for(v1_file), namespace="app", clock=clock) as kv:
        assert schema_of(v1_file) == (sqlite_backend.SCHEMA_VERSION, ["kv", "kv_purge"])
        assert all_rows(v1_file) == before  # nothing lost, nothing changed
        assert await kv.get("plain") == "hello"
        assert await kv.get("binary", "bytes") == bytes(range(256))
        assert await kv.get_with_metadata("meta", "json") == KVEntry(
            {"a": 1}, {"owner": "x", "n": [1, 2]}
        )
        assert await kv.get("expired") is None
        assert [k.name for k in (await kv.list()).keys] == ["binary", "meta", "plain"]
        await kv.put("new", "v", expiration_ttl=60)
        assert await kv.get("new") == "v"
    async with kvcache.open_kv(url_for(v1_file), namespace="other", clock=clock) as kv:
        assert await kv.get("plain") == "héllo ✓"


async def test_the_upgraded_file_purges_expired_rows_without_the_index(
    v1_file: Path, clock: FakeClock
) -> None:
    live = rows(v1_file, "expiration IS NULL OR expiration > ?", (clock(),))
    async with kvcache.open_kv(url_for(v1_file), namespace="bulk", clock=clock) as kv:
        writes = 0
        while rows(v1_file, "expiration <= ?", (clock(),)) and writes < 10_000:
            await kv.put(f"k{writes % 500:04d}", "again")
            writes += 1
    assert rows(v1_file, "expiration <= ?", (clock(),)) == 0
    assert rows(v1_file) == live


async def test_reopening_an_upgraded_file_changes_nothing(v1_file: Path) -> None:
    async with kvcache.open_kv(url_for(v1_file)):
        pass
    upgraded = all_rows(v1_file), schema_of(v1_file)
    async with kvcache.open_kv(url_for(v1_file)):
        pass
    assert (all_rows(v1_file), schema_of(v1_file)) == upgraded


def _open_v1(url: str, start: Barrier, worker: int) -> None:
    """Child: open the version-1 file at the same moment as the others, read and write."""

    async def run() -> None:
        start.wait(60)
        async with kvcache.open_kv(url, namespace="app") as kv:
            assert await kv.get("plain") == "hello"
            await kv.put(f"opener{worker}", str(worker))

    asyncio.run(run())


@pytest.mark.slow
async def test_processes_opening_a_version_1_file_at_once_all_get_the_upgrade(
    v1_file: Path,
) -> None:
    before = all_rows(v1_file)
    ctx = multiprocessing.get_context("spawn")
    start = ctx.Barrier(OPENERS)
    procs = [
        ctx.Process(target=_open_v1, args=(url_for(v1_file), start, w)) for w in range(OPENERS)
    ]
    await asyncio.to_thread(start_and_join, procs, 120)
    assert schema_of(v1_file) == (sqlite_backend.SCHEMA_VERSION, ["kv", "kv_purge"])
    after = all_rows(v1_file)
    assert [row for row in after if not row[1].startswith("opener")] == before
    assert sorted(row[1] for row in after if row[1].startswith("opener")) == [
        f"opener{w}" for w in range(OPENERS)
    ]


async def test_a_file_of_an_unknown_version_is_refused_and_left_alone(v1_file: Path) -> None:
    conn = sqlite3.connect(v1_file)
    conn.execute("PRAGMA user_version = 7")
    conn.close()
    before = all_rows(v1_file)
    with pytest.raises(KVBackendError, match="schema version 7") as info:
        await kvcache.open_kv(url_for(v1_file))
    assert str(v1_file) in str(info.value)
    assert schema_of(v1_file) == (7, ["kv", "kv_expiration"])
    assert all_rows(v1_file) == before


async def test_a_foreign_kv_table_is_refused_and_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "foreign.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE kv (id INTEGER PRIMARY KEY, blob TEXT)")
    conn.commit()
    conn.close()
    with pytest.raises(KVBackendError, match="columns"):
        await kvcache.open_kv(url_for(path))
    assert schema_of(path) == (0, ["kv"])  # no kv_purge, no version: rolled back
