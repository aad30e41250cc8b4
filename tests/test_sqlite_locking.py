"""SQLite under another writer's lock: the loop keeps running, writes wait or fail cleanly.

Another process (spawned, a raw sqlite3 connection) holds BEGIN IMMEDIATE while
this process's store works. Nothing here asserts a duration: the loop's liveness
is a count of heartbeats and reads made while the lock was held, and a wait that
should be skipped is one the test could not survive (its timeout is below the
store's busy_timeout).
"""

from __future__ import annotations

import asyncio
import multiprocessing
import sqlite3
import threading
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from multiprocessing.process import BaseProcess
from multiprocessing.synchronize import Barrier, Event
from pathlib import Path
from typing import Any, cast

import pytest

import kvcache
from backends import FakeClock
from kvcache import KVBackendError, KVStore
from kvcache.kv.sqlite import SQLiteStore
from processes import start_and_join
from test_sqlite_store import rows, url_for

CTX = multiprocessing.get_context("spawn")
KEYS = [f"k{i:02d}" for i in range(100)]
ROUNDS = 40


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "kv.sqlite3"


def _hold(path: str, locked: Event, release: Event) -> None:
    """Child: take the write lock, say so, keep it until told to let go."""
    conn = sqlite3.connect(path, isolation_level=None, timeout=60)
    conn.execute("BEGIN IMMEDIATE")
    locked.set()
    release.wait(120)
    conn.execute("COMMIT")
    conn.close()


def reap(proc: BaseProcess) -> None:
    """Wait for a process that was told to stop; kill it if it does not."""
    proc.join(60)
    if proc.is_alive():
        proc.kill()
        proc.join()
    assert proc.exitcode == 0


@contextmanager
def lock_held(path: Path) -> Iterator[None]:
    """Another process holds the file's write lock for the body of the with block."""
    locked, release = CTX.Event(), CTX.Event()
    holder = CTX.Process(target=_hold, args=(str(path), locked, release))
    holder.start()
    try:
        assert locked.wait(60), "the lock holder never took the lock"
        yield
    finally:
        release.set()
        reap(holder)


class Counter:
    """Counts what a coroutine got done, and the value of that count at a moment."""

    def __init__(self) -> None:
        self.count = 0
        self.stop = asyncio.Event()

    async def every(self, seconds: float, step: Callable[[], Coroutine[Any, Any, object]]) -> None:
        while not self.stop.is_set():
            await step()
            self.count += 1
            await asyncio.sleep(seconds)


@pytest.mark.slow
async def test_put_waits_for_the_lock_with_the_loop_running(db: Path) -> None:
    async with kvcache.open_kv(url_for(db)) as kv:
        await kv.put("before", "v")
        beats, reads, puts = Counter(), Counter(), Counter()
        names = iter(range(1_000_000))

        async def nothing() -> None:
            pass

        async def read() -> None:
            assert await kv.get("before") == "v"

        async def put() -> None:
            await kv.put(f"k{next(names)}", "v")

        with lock_held(db):
            tasks = [
                asyncio.create_task(beats.every(0.001, nothing)),
                asyncio.create_task(reads.every(0.001, read)),
                asyncio.create_task(puts.every(0.01, put)),
            ]
            await asyncio.sleep(2)
            during = beats.count, reads.count, puts.count
        while puts.count < 2 and not tasks[2].done():  # the waiting put lands after COMMIT
            await asyncio.sleep(0.01)
        for counter in (beats, reads, puts):
            counter.stop.set()
        await asyncio.gather(*tasks)
    beats_during, reads_during, puts_during = during
    assert puts_during == 0, "a put finished while another process held the lock"
    # With sqlite3 waiting inside C on the loop's thread this was 0-7 beats in 2 s.
    assert beats_during >= 100
    assert reads_during >= 50
    assert rows(db, "key IN ('k0', 'k1')") == 2


async def test_writes_fail_with_kvbackenderror_after_busy_timeout(db: Path) -> None:
    async with kvcache.open_kv(url_for(db) + "?busy_timeout=0.2", namespace="t") as kv:
        await kv.put_many([{"key": "a", "value": "old"}, {"key": "b", "value": "old"}])
        calls: list[Callable[[], Coroutine[Any, Any, object]]] = [
            lambda: kv.put("a", "new"),
            lambda: kv.put_many([{"key": "a", "value": "new"}, {"key": "c", "value": "new"}]),
            lambda: kv.delete("a"),
            lambda: kv.delete_many(["a", "b"]),
            lambda: kv.put_if_absent("c", "new"),
            lambda: kv.delete_if_equals("a", "old"),
        ]
        with lock_held(db):
            for call in calls:
                with pytest.raises(KVBackendError) as info:
                    await call()
                assert info.value.backend == "sqlite"
                assert isinstance(info.value.cause, sqlite3.OperationalError)
                assert info.value.__cause__ is info.value.cause
                assert "locked" in str(info.value) and "busy_timeout=0.2 s" in str(info.value)
                assert str(db) in str(info.value)
            assert await kv.get("a") == "old"  # reads never wait for the writer
        assert await kv.get_many(["a", "b", "c"]) == {"a": "old", "b": "old", "c": None}
        await kv.put("a", "new")  # and the store works again
        assert await kv.get("a") == "new"


async def test_a_write_cancelled_while_it_waits_writes_nothing(db: Path) -> None:
    async with kvcache.open_kv(url_for(db), namespace="c") as kv:
        await kv.put("a", "old")
        with lock_held(db):
            entries = [{"key": "a", "value": "new"}, {"key": "b", "value": "new"}]
            put = asyncio.create_task(kv.put_many(entries))
            await asyncio.sleep(0.2)  # long enough to be waiting in its backoff
            assert not put.done()
            put.cancel()
            with pytest.raises(asyncio.CancelledError):
                await put
        await kv.put("c", "after")  # the lock is free and the store works
        assert await kv.get_many(["a", "b", "c"]) == {"a": "old", "b": None, "c": "after"}


@pytest.mark.timeout(20)  # below the store's busy_timeout: a purge that waited would time out
async def test_purge_skips_while_another_process_holds_the_lock(db: Path, clock: FakeClock) -> None:
    async with kvcache.open_kv(url_for(db) + "?busy_timeout=30", namespace="p", clock=clock) as kv:
        store = cast(SQLiteStore, kv)
        await kv.put_many(
            [{"key": f"old{i}", "value": "v", "expiration_ttl": 60} for i in range(10)]
        )
        await kv.put("live", "v")
        clock.advance(61)
        with lock_held(db):
            store._purge()
            assert rows(db, "namespace = 'p'") == 11
        store._purge()
        assert rows(db, "namespace = 'p'") == 1
        assert await kv.get("live") == "v"


def _batches(url: str, worker: int, start: Barrier, out: Any) -> None:
    """Child: whole-key-set writes, deletes and poisoned writes, as fast as it can."""

    async def run() -> None:
        committed = failed = 0
        async with kvcache.open_kv(url, namespace="bulk") as kv:
            start.wait(60)
            for j in range(ROUNDS):
                value = f"{worker}:{j}"
                if j % 5 == 4:
                    await kv.delete_many(KEYS)
                    committed += 1
                    continue
                entries = [{"key": key, "value": value} for key in KEYS]
                if j % 7 == 3:
                    entries.insert(50, {"key": "poison", "value": value})
                    try:
                        await kv.put_many(entries)
                    except KVBackendError:
                        failed += 1
                    continue
                await kv.put_many(entries)
                committed += 1
        out.put((committed, failed))

    asyncio.run(run())


@pytest.mark.slow
async def test_bulk_writes_are_all_or_nothing_under_contention(db: Path) -> None:
    url = url_for(db)
    async with kvcache.open_kv(url, namespace="bulk") as kv:
        await kv.put_many([{"key": key, "value": "first"} for key in KEYS])
        conn = sqlite3.connect(db)
        conn.execute(
            "CREATE TRIGGER poison BEFORE INSERT ON kv WHEN new.key = 'poison' "
            "BEGIN SELECT RAISE(ABORT, 'poisoned row'); END"
        )
        conn.commit()
        conn.close()
        workers = 3
        start, out = CTX.Barrier(workers), CTX.Queue()
        procs = [CTX.Process(target=_batches, args=(url, w, start, out)) for w in range(workers)]
        done = asyncio.create_task(asyncio.to_thread(start_and_join, procs, 120))
        snapshots: list[set[str | None]] = []
        while not done.done():
            snapshots.append(set((await kv.get_many(KEYS)).values()))
            await asyncio.sleep(0.002)
        await done
        final = set((await kv.get_many(KEYS)).values())
    results = [out.get(timeout=10) for _ in procs]
    poisoned = sum(1 for j in range(ROUNDS) if j % 5 != 4 and j % 7 == 3)
    assert results == [(ROUNDS - poisoned, poisoned)] * workers
    assert len(snapshots) >= 10
    mixed = [seen for seen in snapshots if len(seen) != 1]
    assert not mixed, f"a reader saw a batch half-applied: {mixed[:3]}"
    assert len({value for seen in snapshots for value in seen}) > 2  # the writers were seen
    assert len(final) == 1 and final != {"first"}
    assert rows(db, "key = 'poison'") == 0


def _writer(url: str, start: Barrier, stop: Event) -> None:
    """Child: single puts at full speed on the same file until told to stop."""

    async def run() -> None:
        async with kvcache.open_kv(url, namespace="other") as kv:
            start.wait(60)
            i = 0
            while not stop.is_set():
                await kv.put(f"x{i % 500}", str(i))
                i += 1

    asyncio.run(run())


@pytest.mark.slow
async def test_one_store_shared_by_threads_while_a_process_writes(db: Path) -> None:
    """Like a sync facade's private loop thread, or several: the store guards its connection."""
    url = url_for(db)
    start, stop = CTX.Barrier(2), CTX.Event()
    writer = CTX.Process(target=_writer, args=(url, start, stop))
    writer.start()
    errors: list[BaseException] = []
    claims: list[tuple[int, int]] = []
    try:
        async with kvcache.open_kv(url, namespace="shared") as kv:
            begin = threading.Barrier(4)

            async def work(worker: int, store: KVStore) -> None:
                begin.wait(30)
                for i in range(100):
                    await store.put(f"w{worker}:{i}", str(i))
                    if i % 25 == 0:
                        batch = [{"key": f"w{worker}:b{i}:{j}", "value": "v"} for j in range(20)]
                        await store.put_many(batch)
                    if await store.put_if_absent(f"claim{i}", str(worker)):
                        claims.append((i, worker))
                    assert await store.get(f"w{worker}:{i}") == str(i)

            def thread(worker: int) -> None:
                try:
                    asyncio.run(work(worker, kv))
                except BaseException as exc:  # recorded and re-raised in the test's thread
                    errors.append(exc)

            start.wait(60)
            threads = [threading.Thread(target=thread, args=(w,)) for w in range(4)]
            for t in threads:
                t.start()
            for t in threads:
                await asyncio.to_thread(t.join, 120)
            assert not errors, errors
            for worker in range(4):
                assert len((await kv.list(prefix=f"w{worker}:")).keys) == 100 + 4 * 20
    finally:
        stop.set()
        reap(writer)
    assert sorted(i for i, _ in claims) == list(range(100))
    assert rows(db, "namespace = 'other'") > 0
