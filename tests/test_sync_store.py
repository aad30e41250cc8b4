"""The sync store: opening and closing, threads, running loops, errors crossing threads.

The Workers KV behaviour itself is the conformance suite's (it runs through the
sync facade too, see tests/conformance/conftest.py); this module tests what only
the facade has: its loop thread and its callers' threads.
"""

from __future__ import annotations

import asyncio
import gc
import inspect
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

import kvcache
import kvcache.sync
from backends import FakeClock, fresh_key, fresh_namespace
from kvcache import KVBackendError, KVConfigError, KVValidationError, Limits
from kvcache.sync import ForkedStoreError, RunningLoopError


def loop_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "kvcache-sync"]


def test_open_kv_returns_an_open_store_and_close_ends_its_thread(
    store_url: str, clock: FakeClock
) -> None:
    before = len(loop_threads())
    kv = kvcache.sync.open_kv(store_url, namespace=fresh_namespace(), clock=clock)
    assert len(loop_threads()) == before + 1
    assert isinstance(kv, kvcache.sync.KVStore)
    kv.put("k", "v", metadata={"m": 1})
    assert kv.get("k") == "v"
    assert kv.get_with_metadata("k") == kvcache.KVEntry("v", {"m": 1})
    assert not kv.closed
    kv.close()
    kv.close()  # idempotent
    assert kv.closed
    assert len(loop_threads()) == before


def test_with_closes_and_a_closed_store_fails_like_the_async_one(
    store_url: str, clock: FakeClock
) -> None:
    with kvcache.sync.open_kv(store_url, namespace=fresh_namespace(), clock=clock) as kv:
        kv.put("k", "v")
    assert kv.closed
    with pytest.raises(KVBackendError) as info:
        kv.get("k")
    assert info.value.backend == kv.backend
    with pytest.raises(KVValidationError, match="empty"):
        kv.get("")  # validation still runs first: the same core code, on a throwaway loop
    with pytest.raises(KVBackendError):
        kv.put_many([{"key": "a", "value": "b"}])


def test_store_attributes_are_the_async_stores(skv: kvcache.sync.KVStore) -> None:
    assert skv.limits == Limits.cloudflare()
    assert skv.atomic is True
    assert skv.backend in ("memory", "sqlite", "redis")
    assert skv.namespace in repr(skv) and "kvcache.sync.KVStore" in repr(skv)
    assert type(skv).__module__ == "kvcache.sync"


def test_open_errors_have_the_async_types_and_leave_no_thread(store_url: str) -> None:
    before = len(loop_threads())
    with pytest.raises(KVConfigError, match="scheme"):
        kvcache.sync.open_kv("nosuch://x")
    with pytest.raises(TypeError, match="namespace"):
        kvcache.sync.open_kv(store_url, namespace="")
    with pytest.raises(TypeError):
        kvcache.sync.open_kv(42)  # type: ignore[arg-type]
    assert len(loop_threads()) == before


def test_validation_errors_cross_threads_unchanged(skv: kvcache.sync.KVStore) -> None:
    async def from_the_async_store() -> KVValidationError:
        async with kvcache.open_kv("memory://") as kv:
            with pytest.raises(KVValidationError) as info:
                await kv.put("k", "v", expiration_ttl=30)
        return info.value

    expected = asyncio.run(from_the_async_store())
    with pytest.raises(KVValidationError) as info:
        skv.put("k", "v", expiration_ttl=30)
    assert str(info.value) == str(expected) and "expiration_ttl of 30" in str(expected)
    assert (info.value.status, info.value.op) == (expected.status, expected.op)
    with pytest.raises(TypeError):
        skv.put("k", 5)  # type: ignore[arg-type]


def test_many_threads_at_once(skv: kvcache.sync.KVStore) -> None:
    """32 threads x 50 rounds of put/get/put_if_absent/delete on one store, no lost write."""
    winners: list[int] = []

    def work(worker: int) -> None:
        for i in range(50):
            key = f"w{worker}:{i}"
            skv.put(key, str(i * worker))
            assert skv.get(key) == str(i * worker)
            if skv.put_if_absent(f"race:{i}", str(worker)):
                winners.append(i)
        skv.delete(f"w{worker}:0")

    with ThreadPoolExecutor(32) as pool:
        list(pool.map(work, range(32)))
    assert sorted(winners) == list(range(50))  # each race key won exactly once
    names = []
    page = skv.list(prefix="w")
    while True:
        names += [info.name for info in page.keys]
        if page.list_complete:
            break
        page = skv.list(prefix="w", cursor=page.cursor)
    assert len(names) == 32 * 49


async def test_from_worker_threads_of_a_running_loop(skv: kvcache.sync.KVStore) -> None:
    key = fresh_key()
    await asyncio.to_thread(skv.put, key, "v")
    loop = asyncio.get_running_loop()
    with ThreadPoolExecutor(8) as pool:
        got = await asyncio.gather(*(loop.run_in_executor(pool, skv.get, key) for _ in range(40)))
    assert got == ["v"] * 40


async def test_on_a_running_loops_thread_it_refuses_instead_of_blocking(
    skv: kvcache.sync.KVStore,
) -> None:
    with pytest.raises(RunningLoopError, match="asyncio.to_thread") as info:
        skv.get("k")
    assert isinstance(info.value, RuntimeError) and isinstance(info.value, kvcache.KVError)
    with pytest.raises(RunningLoopError):
        skv.close()
    with pytest.raises(RunningLoopError):
        kvcache.sync.open_kv("memory://")
    assert not skv.closed
    assert await asyncio.to_thread(skv.get, "k") is None


def test_from_inside_its_own_loop_it_refuses_instead_of_deadlocking(
    skv: kvcache.sync.KVStore,
) -> None:
    cache = kvcache.sync.Cache(skv)

    async def fetch() -> Any:  # an async fetch runs on the store's own loop thread
        return skv.get("other")

    with pytest.raises(RunningLoopError):
        cache.get_or_set("k", fetch)
    assert skv.get("k") is None  # and the store still answers


def test_calls_in_flight_when_the_store_closes_get_the_closed_error(
    store_url: str,
) -> None:
    kv = kvcache.sync.open_kv(store_url, namespace=fresh_namespace())
    cache = kvcache.sync.Cache(kv)
    started, release = threading.Event(), threading.Event()
    outcome: list[BaseException] = []

    def slow() -> str:
        started.set()
        release.wait(5)
        return "late"

    def caller() -> None:
        try:
            cache.get_or_set("k", slow)
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=caller)
    thread.start()
    assert started.wait(5)
    closer = threading.Thread(target=kv.close)
    closer.start()
    closer.join(5)
    assert not closer.is_alive()  # close does not wait for the fetch
    release.set()
    thread.join(5)
    assert len(outcome) == 1 and isinstance(outcome[0], KVBackendError)
    assert "closed" in str(outcome[0])


def test_an_unclosed_store_warns_and_frees_its_thread(store_url: str) -> None:
    before = len(loop_threads())
    kv = kvcache.sync.open_kv(store_url, namespace=fresh_namespace())
    kv.put("k", "v")
    with pytest.warns(ResourceWarning, match="unclosed"):
        del kv
        gc.collect()
    deadline = time.monotonic() + 5
    while len(loop_threads()) > before and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(loop_threads()) == before


def test_an_interrupted_caller_cancels_its_call_and_the_store_carries_on(
    skv: kvcache.sync.KVStore,
) -> None:
    """KeyboardInterrupt in a fetch reaches its caller; the loop survives it."""
    cache = kvcache.sync.Cache(skv)

    def interrupted() -> str:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        cache.get_or_set("k", interrupted)
    assert cache.get_or_set("k", lambda: "fine") == "fine"
    assert cache.get("k") == "fine"


def test_a_system_exit_from_an_async_fetch_does_not_stop_the_loop(
    skv: kvcache.sync.KVStore,
) -> None:
    cache = kvcache.sync.Cache(skv)

    async def leave() -> str:
        raise SystemExit(3)

    with pytest.raises(SystemExit):
        cache.get_or_set("k", leave)
    skv.put("k2", "v")
    assert skv.get("k2") == "v"


def test_two_stores_have_two_loops(store_url: str) -> None:
    with (
        kvcache.sync.open_kv(store_url, namespace="a") as first,
        kvcache.sync.open_kv(store_url, namespace="b") as second,
    ):
        first.put("k", "1")
        second.put("k", "2")
        assert (first.get("k"), second.get("k")) == ("1", "2")
        assert first._portal is not second._portal


def test_a_forked_child_is_told_to_open_its_own_store(store_url: str) -> None:
    """fork copies only the calling thread: the child must not wait for a loop that is gone."""
    kv = kvcache.sync.open_kv(store_url, namespace=fresh_namespace())
    try:
        kv.put("k", "parent")
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: report what happened, then leave without cleanup
            try:
                try:
                    kv.get("k")
                    report = "no error"
                except ForkedStoreError as exc:
                    kv.close()  # a no-op here: the parent owns the store
                    report = f"ForkedStoreError {exc}"
                with kvcache.sync.open_kv(store_url, namespace=kv.namespace) as own:
                    report += f"|{own.get('k')}"
                os.write(write, report.encode())
            finally:
                os._exit(0)
        os.close(write)
        with os.fdopen(read) as pipe:
            report = pipe.read()
        os.waitpid(pid, 0)
        shared = not store_url.startswith("memory")
        assert report.startswith("ForkedStoreError") and "worker process" in report
        assert report.endswith("|parent" if shared else "|None")
        assert kv.get("k") == "parent"  # the parent's store is untouched
    finally:
        kv.close()


def test_the_sync_module_surface() -> None:
    assert kvcache.sync.__all__ == sorted(kvcache.sync.__all__)
    for name in kvcache.sync.__all__:
        assert getattr(kvcache.sync, name).__module__ == "kvcache.sync", name
    assert not hasattr(kvcache, "sync") or "sync" not in kvcache.__all__
    assert issubclass(ForkedStoreError, kvcache.KVError)


@pytest.mark.parametrize(
    ("async_api", "sync_api", "names"),
    [
        (
            kvcache.KVStore,
            kvcache.sync.KVStore,
            "get get_with_metadata get_many get_many_with_metadata list put delete put_many "
            "delete_many put_if_absent delete_if_equals close",
        ),
        (
            kvcache.Cache,
            kvcache.sync.Cache,
            "__init__ get set delete delete_prefix get_or_set cached stats close",
        ),
        (kvcache.Idempotency, kvcache.sync.Idempotency, "__init__ run claim"),
    ],
    ids=["KVStore", "Cache", "Idempotency"],
)
def test_the_sync_api_has_the_async_signatures(async_api: type, sync_api: type, names: str) -> None:
    """Same names, kinds and defaults: an option added to the core must reach the facade."""
    for name in names.split():
        theirs = inspect.signature(getattr(async_api, name)).parameters
        ours = inspect.signature(getattr(sync_api, name)).parameters
        shape = [(p.name, p.kind, p.default) for p in theirs.values()]
        assert [(p.name, p.kind, p.default) for p in ours.values()] == shape, name


def test_open_kv_has_the_async_signature() -> None:
    theirs = inspect.signature(kvcache.open_kv).parameters
    ours = inspect.signature(kvcache.sync.open_kv).parameters
    assert [(p.name, p.kind, p.default) for p in ours.values()] == [
        (p.name, p.kind, p.default) for p in theirs.values()
    ]
