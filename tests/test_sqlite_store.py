"""SQLite specifics: file locations, WAL, many processes and threads, purging, failures.

Everything runs on real files under tmp_path; the multi-process race uses the
'spawn' start method so each child opens the file from scratch.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import sqlite3
import threading
from pathlib import Path
from typing import Any

import pytest

import kvcache
from backends import FakeClock
from kvcache import KVBackendError, KVConfigError, KVStore
from kvcache.kv import sqlite as sqlite_backend

RACERS = 4
ROUNDS = 8


def url_for(path: Path) -> str:
    return f"sqlite:///{path}"


def rows(path: Path, where: str = "1", params: tuple[Any, ...] = ()) -> int:
    with sqlite3.connect(path) as conn:
        count: int = conn.execute(f"SELECT count(*) FROM kv WHERE {where}", params).fetchone()[0]
    conn.close()
    return count


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "kv.sqlite3"


async def test_default_path_without_url_or_env(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("KVCACHE_STORE", raising=False)
    async with kvcache.open_kv() as kv:
        assert kv.backend == "sqlite"
        await kv.put("k", "v")
    path = tmp_path / ".kvcache" / "kv.sqlite3"
    assert path.is_file()
    assert rows(path, "key = 'k' AND namespace = 'default'") == 1


async def test_kvcache_store_env_picks_the_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("KVCACHE_STORE", "sqlite:///from-env.db")
    async with kvcache.open_kv() as kv:
        await kv.put("k", "v")
    assert rows(tmp_path / "from-env.db") == 1
    assert not (tmp_path / ".kvcache").exists()


async def test_relative_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    async with kvcache.open_kv("sqlite:///data/nested/rel.db") as kv:
        await kv.put("k", "v")
    assert rows(tmp_path / "data" / "nested" / "rel.db") == 1


async def test_absolute_url(tmp_path: Path) -> None:
    path = tmp_path / "abs" / "kv.db"
    url = "sqlite:////" + str(path).lstrip("/")
    assert url.startswith("sqlite:////")
    async with kvcache.open_kv(url) as kv:
        await kv.put("k", "v")
    assert rows(path) == 1


@pytest.mark.parametrize("url", ["sqlite://host/kv.db", "sqlite://", "sqlite:///"])
async def test_bad_sqlite_urls(url: str) -> None:
    with pytest.raises(KVConfigError):
        await kvcache.open_kv(url)


async def test_busy_timeout_from_url(db: Path) -> None:
    async with kvcache.open_kv(url_for(db) + "?busy_timeout=2.5") as kv:
        assert kv.busy_timeout == 2.5  # type: ignore[attr-defined]
        conn: sqlite3.Connection = kv._conn  # type: ignore[attr-defined]
        assert conn.execute("PRAGMA busy_timeout").fetchone()[0] == 0  # never waits inside C


@pytest.mark.parametrize("value", ["abc", "-1", "nan", "inf"])
async def test_bad_busy_timeout_in_url(db: Path, value: str) -> None:
    with pytest.raises(KVConfigError, match="busy_timeout"):
        await kvcache.open_kv(url_for(db) + f"?busy_timeout={value}")


async def test_wal_mode(db: Path) -> None:
    async with kvcache.open_kv(url_for(db)) as kv:
        await kv.put("k", "v")
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        conn.close()


async def test_reads_hold_no_snapshot_between_calls(db: Path) -> None:
    # A read that kept its statement open would pin a WAL snapshot: another
    # connection's TRUNCATE checkpoint would then report busy, and the WAL grow.
    async with kvcache.open_kv(url_for(db)) as kv:
        await kv.put_many([{"key": f"k{i}", "value": "v" * 100} for i in range(200)])
        other = sqlite3.connect(db, isolation_level=None)
        try:
            for read in (
                lambda: kv.get("k1"),
                lambda: kv.get("missing"),
                lambda: kv.get_with_metadata("k2"),
                lambda: kv.get_many(["k3", "k4"]),
                lambda: kv.list(limit=10),
            ):
                await read()
                other.executemany(
                    "INSERT OR REPLACE INTO kv (namespace, key, value) VALUES ('x', ?, ?)",
                    [(f"w{i}", b"w" * 100) for i in range(200)],
                )
                busy = other.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
                assert busy == 0, read
        finally:
            other.close()


async def test_stored_bytes_scans_off_the_loop(db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A scan of a whole namespace can take long on a big file: it runs on the store's
    # worker thread, on a connection of its own.
    opened_on: list[int] = []
    connect = sqlite3.connect

    def recording_connect(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        opened_on.append(threading.get_ident())
        conn: sqlite3.Connection = connect(*args, **kwargs)
        return conn

    async with kvcache.open_kv(url_for(db)) as kv:
        await kv.put_many([{"key": f"k{i}", "value": "v" * 10} for i in range(100)])
        monkeypatch.setattr(sqlite3, "connect", recording_connect)
        assert await kv.stored_bytes() == 100 * 10 + sum(len(f"k{i}") for i in range(100))
        monkeypatch.undo()
        assert opened_on and threading.get_ident() not in opened_on
    with pytest.raises(KVBackendError):
        await kv.stored_bytes()


async def test_many_namespaces_in_one_file(db: Path) -> None:
    stores = [await kvcache.open_kv(url_for(db), namespace=f"ns{i}") for i in range(5)]
    try:
        for i, kv in enumerate(stores):
            await kv.put_many([{"key": f"k{j}", "value": f"{i}:{j}"} for j in range(3)])
        for i, kv in enumerate(stores):
            assert await kv.get("k1") == f"{i}:1"
            assert len((await kv.list()).keys) == 3
        await stores[0].delete_many(["k0", "k1", "k2"])
        assert await stores[1].get("k0") == "1:0"
    finally:
        for kv in stores:
            await kv.close()
    assert rows(db) == 12
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT count(DISTINCT namespace) FROM kv").fetchone()[0] == 4
    conn.close()


def _race(url: str, barrier: Any, results: Any) -> None:
    """Child process: one store, one put_if_absent per round, all children in step."""

    async def run() -> None:
        async with kvcache.open_kv(url, namespace="race") as kv:
            for round_ in range(ROUNDS):
                barrier.wait(timeout=60)
                won = await kv.put_if_absent(f"round-{round_}", str(os.getpid()))
                results.put((round_, os.getpid(), won))

    asyncio.run(run())


@pytest.mark.slow
async def test_processes_racing_put_if_absent_have_one_winner(db: Path) -> None:
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(RACERS)
    results = ctx.Queue()
    procs = [ctx.Process(target=_race, args=(url_for(db), barrier, results)) for _ in range(RACERS)]
    for proc in procs:
        proc.start()
    try:
        outcomes = [results.get(timeout=120) for _ in range(RACERS * ROUNDS)]
    finally:
        for proc in procs:
            proc.join(timeout=60)
            if proc.is_alive():
                proc.kill()
                proc.join()
        results.close()
        results.join_thread()
    assert [proc.exitcode for proc in procs] == [0] * RACERS
    async with kvcache.open_kv(url_for(db), namespace="race") as kv:
        for round_ in range(ROUNDS):
            winners = [pid for r, pid, won in outcomes if r == round_ and won]
            assert len(winners) == 1, f"round {round_}: {winners}"
            assert len([1 for r, _, _ in outcomes if r == round_]) == RACERS
            assert await kv.get(f"round-{round_}") == str(winners[0])


async def test_threads_with_own_stores_write_concurrently(db: Path) -> None:
    url = url_for(db)
    errors: list[BaseException] = []
    claims: list[tuple[int, int, bool]] = []
    start = threading.Barrier(4)

    async def work(worker: int) -> None:
        async with kvcache.open_kv(url, namespace="threads") as kv:
            start.wait(timeout=30)
            for i in range(150):
                await kv.put(f"w{worker}:k{i}", str(i), metadata={"w": worker})
                if i % 30 == 0:
                    batch = [{"key": f"w{worker}:b{i}:{j}", "value": "v"} for j in range(50)]
                    await kv.put_many(batch)
                    await kv.delete_many([f"w{worker}:b{i}:{j}" for j in range(25)])
                claims.append((i, worker, await kv.put_if_absent(f"shared:{i}", str(worker))))
                await kv.get(f"w{(worker + 1) % 4}:k{i}")

    def thread(worker: int) -> None:
        try:
            asyncio.run(work(worker))
        except BaseException as exc:  # recorded and re-raised in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=thread, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    for i in range(150):
        assert sum(won for j, _, won in claims if j == i) == 1
    async with kvcache.open_kv(url, namespace="threads") as kv:
        for worker in range(4):
            assert await kv.get(f"w{worker}:k149") == "149"
            assert len((await kv.list(prefix=f"w{worker}:b")).keys) == 5 * 25
            assert len((await kv.list(prefix=f"w{worker}:k")).keys) == 150


def test_threads_opening_a_new_file_at_once(tmp_path: Path) -> None:
    """Racing switches to WAL on a new file used to lock one opener out until timeout."""
    failures: list[BaseException] = []

    def open_and_hold(url: str, barrier: threading.Barrier) -> None:
        async def run() -> None:
            async with kvcache.open_kv(url) as kv:
                await kv.put("k", "v")
                barrier.wait(timeout=30)

        try:
            asyncio.run(run())
        except BaseException as exc:  # recorded for the assertion below
            failures.append(exc)
            barrier.abort()

    for round_ in range(100):
        url = url_for(tmp_path / f"fresh{round_}.db") + "?busy_timeout=10"
        barrier = threading.Barrier(4)
        threads = [threading.Thread(target=open_and_hold, args=(url, barrier)) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        assert not failures, f"round {round_}: {failures}"


async def test_expired_rows_are_purged_lazily_in_bounded_batches(
    db: Path, clock: FakeClock
) -> None:
    expiring = 2 * sqlite_backend.PURGE_SWEEP_ROWS + 100
    async with kvcache.open_kv(url_for(db), namespace="purge", clock=clock) as kv:
        await kv.put_many(
            [{"key": f"old{i}", "value": "v", "expiration_ttl": 60} for i in range(expiring)]
        )
        clock.advance(61)

        def expired() -> int:
            return rows(db, "expiration <= ?", (clock(),))

        assert expired() == expiring
        assert await kv.get("old0") is None
        assert (await kv.list(prefix="old")).keys == []
        assert expired() == expiring  # reads never delete

        counts = [expired()]
        writes = 0
        while counts[-1] and writes < 20 * sqlite_backend.PURGE_EVERY_WRITES:
            await kv.put(f"new{writes}", "v")
            writes += 1
            counts.append(expired())
    drops = [before - after for before, after in zip(counts, counts[1:], strict=False)]
    assert counts[-1] == 0, "expired rows were never purged"
    assert all(0 <= drop <= sqlite_backend.PURGE_SWEEP_ROWS for drop in drops)
    assert sum(1 for drop in drops if drop) >= 3  # several bounded batches, not one sweep
    assert rows(db) == writes


async def test_purge_spans_namespaces(db: Path, clock: FakeClock) -> None:
    async with (
        kvcache.open_kv(url_for(db), namespace="a", clock=clock) as a,
        kvcache.open_kv(url_for(db), namespace="b", clock=clock) as b,
    ):
        await a.put("gone", "v", expiration_ttl=60)
        clock.advance(60)
        for i in range(sqlite_backend.PURGE_EVERY_WRITES):
            await b.put(f"k{i}", "v")
    assert rows(db, "namespace = 'a'") == 0


async def _poisoned_store(db: Path, when: str) -> KVStore:
    kv = await kvcache.open_kv(url_for(db), namespace="tx")
    await kv.put_many([{"key": k, "value": "old"} for k in ("a", "b", "c")])
    conn = sqlite3.connect(db)
    conn.execute(
        f"CREATE TRIGGER poison BEFORE {when} ON kv WHEN {'new' if when == 'INSERT' else 'old'}"
        ".key = 'poison' BEGIN SELECT RAISE(ABORT, 'poisoned row'); END"
    )
    conn.commit()
    conn.close()
    return kv


async def test_put_many_failing_midway_writes_nothing(db: Path) -> None:
    kv = await _poisoned_store(db, "INSERT")
    try:
        entries = [{"key": k, "value": "new"} for k in ("a", "x", "poison", "y")]
        with pytest.raises(KVBackendError, match="poisoned row") as info:
            await kv.put_many(entries)
        assert info.value.backend == "sqlite"
        assert isinstance(info.value.cause, sqlite3.Error)
        assert info.value.__cause__ is info.value.cause
        assert await kv.get_many(["a", "x", "y"]) == {"a": "old", "x": None, "y": None}
        await kv.put_many([{"key": "a", "value": "new"}])  # the store still works
        assert await kv.get("a") == "new"
    finally:
        await kv.close()


async def test_delete_many_failing_midway_deletes_nothing(db: Path) -> None:
    kv = await _poisoned_store(db, "DELETE")
    try:
        await kv.put("poison", "v")
        with pytest.raises(KVBackendError, match="poisoned row"):
            await kv.delete_many(["a", "b", "poison", "c"])
        assert [i.name for i in (await kv.list()).keys] == ["a", "b", "c", "poison"]
    finally:
        await kv.close()


async def test_path_under_a_regular_file(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    path = blocker / "sub" / "kv.db"
    with pytest.raises(KVBackendError) as info:
        await kvcache.open_kv(url_for(path))
    assert str(path) in str(info.value)
    assert info.value.backend == "sqlite"
    assert info.value.cause is not None


async def test_path_that_is_a_directory(tmp_path: Path) -> None:
    with pytest.raises(KVBackendError) as info:
        await kvcache.open_kv(url_for(tmp_path))
    assert str(tmp_path) in str(info.value)


async def test_corrupt_file(db: Path) -> None:
    db.write_bytes(os.urandom(16384))
    with pytest.raises(KVBackendError) as info:
        await kvcache.open_kv(url_for(db))
    assert str(db) in str(info.value)


async def test_foreign_sqlite_file(db: Path) -> None:
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE kv (id INTEGER PRIMARY KEY, blob TEXT)")
    conn.commit()
    conn.close()
    with pytest.raises(KVBackendError) as info:
        await kvcache.open_kv(url_for(db))
    assert str(db) in str(info.value)


async def test_disk_full_keeps_earlier_data_and_writes_nothing_half(db: Path) -> None:
    kv = await kvcache.open_kv(url_for(db), namespace="full")
    try:
        await kv.put_many([{"key": f"keep{i}", "value": f"v{i}"} for i in range(50)])
        conn: sqlite3.Connection = kv._conn  # type: ignore[attr-defined]
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        conn.execute(f"PRAGMA max_page_count = {pages}")

        with pytest.raises(KVBackendError) as info:
            await kv.put("big", b"x" * 500_000)
        assert "full" in str(info.value) and str(db) in str(info.value)
        big_batch = [{"key": f"new{i:03}", "value": "y" * 4000} for i in range(200)]
        with pytest.raises(KVBackendError):
            await kv.put_many(big_batch)

        assert await kv.get("big") is None
        assert (await kv.list(prefix="new")).keys == []
        assert await kv.get_many([f"keep{i}" for i in range(50)]) == {
            f"keep{i}": f"v{i}" for i in range(50)
        }
        conn.execute("PRAGMA max_page_count = 1073741823")
        await kv.put_many(big_batch)
        assert len((await kv.list(prefix="new")).keys) == 200
    finally:
        await kv.close()
    assert rows(db, "namespace = 'full'") == 250
