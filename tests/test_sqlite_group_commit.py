"""Group commit on the SQLite store: concurrent tasks' writes share one transaction.

What a caller sees does not change: each write is whole or absent, in call order, and
committed when it returns. What changes is how many commits the file sees.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

import kvcache
from kvcache import KVBackendError
from kvcache.kv.sqlite import SQLiteStore


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    kv = await SQLiteStore(str(tmp_path / "kv.sqlite3"), namespace="g").open()
    try:
        yield kv
    finally:
        await kv.close()


def traced(kv: SQLiteStore) -> list[str]:
    """Every statement the store's connection runs from now on."""
    statements: list[str] = []
    kv._conn.set_trace_callback(statements.append)
    return statements


def commits(statements: list[str]) -> int:
    """Transactions: explicit COMMITs, plus writes that committed themselves."""
    explicit = sum(1 for s in statements if s == "COMMIT")
    inside = False
    alone = 0
    for s in statements:
        if s.startswith("BEGIN"):
            inside = True
        elif s in ("COMMIT", "ROLLBACK"):
            inside = False
        elif not inside and s.startswith(("INSERT", "DELETE", "UPDATE")):
            alone += 1
    return explicit + alone


async def test_concurrent_writes_share_commits(store: SQLiteStore) -> None:
    statements = traced(store)
    await asyncio.gather(*(store.put(f"k{i}", f"v{i}") for i in range(50)))
    # The first task's write runs at once; the other 49, made in the same loop
    # iteration, commit together in the next.
    assert commits(statements) == 2
    assert await store.get_many([f"k{i}" for i in range(50)]) == {
        f"k{i}": f"v{i}" for i in range(50)
    }


async def test_one_task_writing_in_a_row_never_waits_for_a_group(store: SQLiteStore) -> None:
    statements = traced(store)
    for i in range(20):
        await store.put("k", str(i))
        assert await store.get("k") == str(i)  # committed when put returned
    assert commits(statements) == 20
    assert not any(s.startswith("BEGIN") for s in statements)


async def test_a_group_keeps_call_order_and_each_result(store: SQLiteStore) -> None:
    claims = await asyncio.gather(
        *(store.put_if_absent("claim", f"worker {i}", expiration_ttl=60) for i in range(10))
    )
    assert claims == [True] + [False] * 9
    assert await store.get("claim") == "worker 0"
    results = await asyncio.gather(
        store.put("x", "1"), store.put("x", "2"), store.delete("x"), store.put("x", "3")
    )
    assert list(results) == [None] * 4
    assert await store.get("x") == "3"


async def test_a_write_cancelled_before_its_group_commits_is_not_made(
    store: SQLiteStore,
) -> None:
    queued: asyncio.Task[None] | None = None

    async def first() -> None:
        await store.put("first", "1")  # runs at once: this task writes first
        assert queued is not None
        queued.cancel()  # the second write waits for the next iteration

    async def second() -> None:
        await store.put("second", "2")

    one = asyncio.ensure_future(first())
    queued = asyncio.ensure_future(second())
    await one
    with pytest.raises(asyncio.CancelledError):
        await queued
    assert await store.get("first") == "1"
    assert await store.get("second") is None


async def test_a_failing_write_fails_alone(store: SQLiteStore) -> None:
    group = store._group
    sql = "INSERT OR REPLACE INTO kv (namespace, key, value, expiration, metadata) "
    good = sql + "VALUES ('g', ?, X'76', NULL, NULL)"
    outcomes = await asyncio.gather(
        group.write(good, ("a",)),
        group.write("INSERT INTO no_such_table VALUES (1)", ()),
        group.write(good, ("b",)),
        group.write(good, ("c",)),
        return_exceptions=True,
    )
    assert outcomes[0] == 1 and outcomes[2] == 1 and outcomes[3] == 1
    assert isinstance(outcomes[1], KVBackendError)
    assert "no_such_table" in str(outcomes[1])
    assert await store.get_many(["a", "b", "c"]) == {"a": "v", "b": "v", "c": "v"}


async def test_a_group_waits_for_another_connections_lock(tmp_path: Path) -> None:
    path = tmp_path / "kv.sqlite3"
    async with kvcache.open_kv(f"sqlite:///{path}", namespace="g") as kv:
        holder = sqlite3.connect(path, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
        writes = asyncio.gather(*(kv.put(f"k{i}", "v") for i in range(20)))
        await asyncio.sleep(0.2)
        assert not writes.done()  # waiting, and the loop ran on meanwhile
        holder.execute("COMMIT")
        holder.close()
        await writes
        assert len(await kv.get_many([f"k{i}" for i in range(20)])) == 20


async def test_a_group_gives_up_after_the_busy_timeout(tmp_path: Path) -> None:
    path = tmp_path / "kv.sqlite3"
    async with kvcache.open_kv(f"sqlite:///{path}?busy_timeout=0.2", namespace="g") as kv:
        holder = sqlite3.connect(path, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
        try:
            outcomes = await asyncio.gather(
                *(kv.put(f"k{i}", "v") for i in range(5)), return_exceptions=True
            )
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        assert all(isinstance(o, KVBackendError) for o in outcomes)
        assert all("busy_timeout=0.2" in str(o) for o in outcomes)
        assert await kv.get_many([f"k{i}" for i in range(5)]) == dict.fromkeys(
            [f"k{i}" for i in range(5)]
        )
        await kv.put("after", "v")  # nothing is left stuck
        assert await kv.get("after") == "v"


async def test_another_threads_loop_writes_alone_and_leaves_the_group_alone(
    store: SQLiteStore,
) -> None:
    """A future may only be resolved on its own loop: groups form on the loop that wrote
    first; a write from another thread's loop runs alone and touches no group state."""
    import threading

    await store.put("here", "1")  # this loop now groups the store's writes
    group = store._group
    bound = group._loop
    assert bound is asyncio.get_running_loop()
    errors: list[BaseException] = []

    def elsewhere() -> None:
        async def run() -> None:
            await asyncio.gather(*(store.put(f"there:{i}", "2") for i in range(10)))

        try:
            asyncio.run(run())
        except BaseException as exc:  # re-raised in the test's thread below
            errors.append(exc)

    thread = threading.Thread(target=elsewhere)
    thread.start()
    await asyncio.to_thread(thread.join, 30)
    assert errors == []
    assert group._loop is bound and group._queue == []
    assert await store.get_many([f"there:{i}" for i in range(10)]) == {
        f"there:{i}": "2" for i in range(10)
    }
