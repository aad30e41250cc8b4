"""SQLite checkpoints run on the store's worker thread and keep the WAL bounded.

Real files and real processes. The WAL's size is read from the file system; nothing
here asserts a duration. A checkpoint that cannot finish (an old snapshot held open by
another connection) or that fails (its connection is read-only, so SQLite refuses to
copy) must neither lose a write nor raise to the caller.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import signal
import sqlite3
import threading
from multiprocessing.sharedctypes import Synchronized
from multiprocessing.synchronize import Barrier, Event
from pathlib import Path

import pytest

import kvcache
from kvcache.kv import _sqlite_checkpoint as checkpoint
from kvcache.kv.sqlite import SQLiteStore
from processes import running
from test_sqlite_store import rows, url_for

CTX = multiprocessing.get_context("spawn")
WRITERS = 4
#: Each writer puts this many ~3 KB values (a page each): ~160 MB of WAL if nothing emptied it.
PUTS = 10_000
VALUE = "v" * 3_000
#: Generous: the WAL restarts past WAL_LIMIT, but four writers flat out add ~40 MB a second
#: while a checkpoint waits for the write lock (34 MB above the limit was seen).
WAL_BOUND = 4 * checkpoint.WAL_LIMIT


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "kv.sqlite3"


def wal_size(db: Path) -> int:
    try:
        return os.path.getsize(f"{db}-wal")
    except FileNotFoundError:
        return 0


def store_of(kv: kvcache.KVStore) -> SQLiteStore:
    assert isinstance(kv, SQLiteStore)
    return kv


async def settle(kv: SQLiteStore) -> None:
    """Wait until the worker thread has done everything asked of it so far."""
    await asyncio.wrap_future(kv._checkpointer.submit(lambda: None))


async def write_past_the_limit(kv: kvcache.KVStore, tag: str, rounds: int = 3) -> list[str]:
    """Put enough to fill the WAL `rounds` times over; returns the keys."""
    keys = [f"{tag}{i:05d}" for i in range(rounds * checkpoint.WAL_LIMIT // 3_000)]
    for key in keys:
        await kv.put(key, VALUE)
    return keys


async def test_commits_leave_checkpoints_to_the_worker_thread(db: Path) -> None:
    async with kvcache.open_kv(url_for(db), namespace="t") as opened:
        kv = store_of(opened)
        assert kv._conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 0
        names: list[str] = []
        kv._checkpointer.submit(lambda: names.append(threading.current_thread().name)).result()
        assert names != [threading.current_thread().name]
        keys = await write_past_the_limit(kv, "k")
        await settle(kv)
        assert kv._checkpointer.checkpoints >= 1
        assert kv._checkpointer.failures == 0
        # The last checkpoint asked for may have found the lock held by our own writes
        # and backed off; the next write would ask again, as this does.
        for _ in range(5):
            if kv._checkpointer.frames() < checkpoint.WAL_FRAMES:
                break
            await asyncio.sleep(checkpoint.BACKOFF_MAX)
            kv._checkpointer.request()
            await settle(kv)
        # Restarted, not truncated: the file keeps its length, new frames start over.
        assert kv._checkpointer.frames() < checkpoint.WAL_FRAMES
        assert wal_size(db) <= WAL_BOUND
        assert await kv.get_many(keys[-100:]) == dict.fromkeys(keys[-100:], VALUE)
    assert rows(db) == len(keys)


def _writer(url: str, index: int, start: Barrier) -> None:
    """Child: PUTS puts at full speed over 500 keys of its own, the last of each key known."""

    async def run() -> None:
        async with kvcache.open_kv(url, namespace="w") as kv:
            start.wait(60)
            for i in range(PUTS):
                await kv.put(f"{index}:{i % 500:03d}", f"{i}:{VALUE}")

    asyncio.run(run())


@pytest.mark.slow
async def test_wal_stays_bounded_under_four_writer_processes(db: Path) -> None:
    async with kvcache.open_kv(url_for(db), namespace="w"):
        pass  # the file exists, in WAL mode, before the writers start
    start = CTX.Barrier(WRITERS + 1)
    procs = [CTX.Process(target=_writer, args=(url_for(db), i, start)) for i in range(WRITERS)]
    largest = 0
    with running(procs, timeout=300):
        await asyncio.to_thread(start.wait, 60)
        while any(proc.is_alive() for proc in procs):
            largest = max(largest, wal_size(db))
            await asyncio.sleep(0.005)
    assert 0 < largest <= WAL_BOUND, f"the WAL reached {largest:,} bytes"
    async with kvcache.open_kv(url_for(db), namespace="w") as kv:  # nobody reads stale data
        for index in range(WRITERS):
            keys = [f"{index}:{k:03d}" for k in range(500)]
            last = {f"{index}:{k:03d}": f"{PUTS - 500 + k}:{VALUE}" for k in range(500)}
            assert await kv.get_many(keys[:100]) == {k: last[k] for k in keys[:100]}
            assert await kv.get_many(keys[400:]) == {k: last[k] for k in keys[400:]}
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    conn.close()


async def test_a_checkpoint_kept_busy_by_an_old_snapshot_loses_and_raises_nothing(
    db: Path,
) -> None:
    async with kvcache.open_kv(url_for(db), namespace="b") as opened:
        kv = store_of(opened)
        await kv.put("first", "1")
        reader = sqlite3.connect(db, isolation_level=None)
        reader.execute("BEGIN")
        assert reader.execute("SELECT count(*) FROM kv").fetchone()[0] == 1  # a snapshot
        try:
            keys = await write_past_the_limit(kv, "b")
            await settle(kv)
            assert kv._checkpointer.busy >= 1
            assert kv._checkpointer.checkpoints == 0
            assert kv._checkpointer.frames() >= checkpoint.WAL_FRAMES  # it could not restart
            assert await kv.get_many(keys[-100:]) == dict.fromkeys(keys[-100:], VALUE)
        finally:
            reader.execute("COMMIT")
            reader.close()
        more = await write_past_the_limit(kv, "c", rounds=1)  # the reader is gone: it empties
        for _ in range(1_000):
            if kv._checkpointer.checkpoints:
                break
            await kv.put("again", "x")
            await asyncio.sleep(0.002)
        await settle(kv)
        assert kv._checkpointer.checkpoints >= 1
        assert kv._checkpointer.failures == 0
    assert rows(db, "key != 'again'") == 1 + len(keys) + len(more)


def _read_only(path: str) -> sqlite3.Connection:
    """A connection SQLite refuses to checkpoint with (it may not write the file)."""
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)


async def test_a_failing_checkpoint_loses_and_raises_nothing(db: Path) -> None:
    async with kvcache.open_kv(url_for(db), namespace="f") as opened:
        kv = store_of(opened)
        kv._checkpointer.opener = _read_only
        keys = await write_past_the_limit(kv, "f")
        await settle(kv)
        assert kv._checkpointer.failures >= 1
        assert isinstance(kv._checkpointer.error, sqlite3.Error)
        assert kv._checkpointer.checkpoints == 0
        assert await kv.get_many(keys[-100:]) == dict.fromkeys(keys[-100:], VALUE)
    assert rows(db) == len(keys)
    async with kvcache.open_kv(url_for(db), namespace="f") as again:
        assert await again.get(keys[0]) == VALUE


def _until_killed(url: str, done: Synchronized[int], going: Event) -> None:
    """Child: put keys 0, 1, 2, ... and publish how many have returned, until it is killed."""

    async def run() -> None:
        async with kvcache.open_kv(url, namespace="crash") as kv:
            i = 0
            while True:
                await kv.put(f"k{i:06d}", f"{i}:{VALUE}")
                i += 1
                done.value = i
                if i == 2_000:
                    going.set()

    asyncio.run(run())


@pytest.mark.slow
async def test_a_process_killed_while_writing_leaves_a_usable_file(db: Path) -> None:
    done, going = CTX.Value("q", 0), CTX.Event()
    child = CTX.Process(target=_until_killed, args=(url_for(db), done, going))
    child.start()
    try:
        assert await asyncio.to_thread(going.wait, 120), "the child never got going"
        assert wal_size(db) > 0
        os.kill(child.pid or 0, signal.SIGKILL)
    finally:
        child.join(60)
    assert child.exitcode == -signal.SIGKILL
    returned = done.value
    async with kvcache.open_kv(url_for(db), namespace="crash") as opened:
        kv = store_of(opened)
        keys = [f"k{i:06d}" for i in range(returned)]
        found = {}
        for start in range(0, returned, 100):
            found.update(await kv.get_many(keys[start : start + 100]))
        assert found == {key: f"{int(key[1:])}:{VALUE}" for key in keys}
        more = await write_past_the_limit(kv, "after", rounds=2)
        await settle(kv)
        assert kv._checkpointer.checkpoints >= 1
        assert await kv.get(more[-1]) == VALUE
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    conn.close()


async def test_the_frame_count_is_sqlites_own(db: Path) -> None:
    async with kvcache.open_kv(url_for(db), namespace="n") as opened:
        kv = store_of(opened)
        for i in range(50):
            await kv.put(f"k{i}", VALUE)
        busy, log, _ = kv._conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        assert busy == 0 and log > 0
        assert kv._checkpointer.frames() == log


async def test_a_checkpoint_restarts_the_wal_without_truncating_it(db: Path) -> None:
    async with kvcache.open_kv(url_for(db), namespace="r") as opened:
        kv = store_of(opened)
        await write_past_the_limit(kv, "r", rounds=1)
        await settle(kv)
        done = kv._checkpointer.checkpoints
        while kv._checkpointer.checkpoints == done:  # one more, with no write meanwhile
            kv._checkpointer._not_before = 0.0
            kv._checkpointer.request()
            await settle(kv)
        length = wal_size(db)
        assert length >= checkpoint.WAL_LIMIT // 2  # the file keeps its length ...
        assert kv._checkpointer.frames() <= 2  # ... and starts over (the restart's commit)
        await kv.put("after", VALUE)
        assert wal_size(db) == length  # the next frames overwrite it from its start
