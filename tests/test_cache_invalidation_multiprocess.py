"""Invalidation-safe fills across processes, on real SQLite files and a real redis-server.

A spawned worker runs `get_or_set` with a fetch it holds open until this process says
go; meanwhile this process invalidates the key with its own `Cache` (the two share
nothing but the store). The worker's caller still gets what it fetched, but neither the
store nor the worker's local tier may keep it. The control (no invalidation) shows
that the same run does store the value when nothing intervenes.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
from dataclasses import dataclass
from multiprocessing.synchronize import Event
from pathlib import Path
from typing import Any

import pytest

import kvcache
from backends import BACKENDS, Backend, fresh_namespace
from kvcache.cache import Cache
from processes import running

SHARED = [backend for backend in BACKENDS if backend.shared]
DEADLINE = 30.0  # a hang guard for waits and joins, not a timing
KEY = "customer:email:a@b.c"
BEFORE = {"email": "a@b.c", "name": "before the webhook"}
MISS = "<miss>"


@dataclass(frozen=True)
class Job:
    url: str
    namespace: str
    lock: bool
    out: str


async def _fill(job: Job, started: Event, go: Event) -> dict[str, Any]:
    async with kvcache.open_kv(job.url, namespace=job.namespace) as kv:
        cache = Cache(kv, local_ttl=300, lock_timeout=DEADLINE)

        async def fetch() -> dict[str, str]:
            started.set()
            if not await asyncio.to_thread(go.wait, DEADLINE):
                raise RuntimeError("the test never released the fetch")
            return BEFORE

        result = await cache.get_or_set(KEY, fetch, lock=job.lock)
        # This process's own view afterwards: its local tier first, then the store.
        return {"result": result, "after": await cache.get(KEY, MISS)}


def _worker(job: Job, started: Event, go: Event) -> None:
    Path(job.out).write_text(json.dumps(asyncio.run(_fill(job, started, go))))


@pytest.fixture(params=SHARED, ids=[backend.id for backend in SHARED])
def shared_url(request: pytest.FixtureRequest) -> str:
    backend: Backend = request.param
    return backend.url(request)


CASES = [
    # (invalidation in this process, what the key held before, lock=True in the worker)
    ("delete", "absent", False),
    ("delete", "tombstone", True),
    ("delete_prefix", "absent", False),
    ("delete_prefix", "absent", True),
    ("delete_prefix", "tombstone", False),
    (None, "absent", False),
    (None, "tombstone", True),
]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("how", "before", "lock"),
    CASES,
    ids=[f"{how or 'control'}-{was}-{'lock' if lock else 'plain'}" for how, was, lock in CASES],
)
async def test_an_invalidation_from_another_process_keeps_the_fill_out(
    shared_url: str, tmp_path: Path, how: str | None, before: str, lock: bool
) -> None:
    ctx = multiprocessing.get_context("spawn")
    job = Job(shared_url, fresh_namespace(), lock, str(tmp_path / "worker.json"))
    started, go = ctx.Event(), ctx.Event()
    async with kvcache.open_kv(shared_url, namespace=job.namespace) as kv:
        cache = Cache(kv)
        if before == "tombstone":
            await cache.delete(KEY)
        with running([ctx.Process(target=_worker, args=(job, started, go))], DEADLINE):
            assert await asyncio.to_thread(started.wait, DEADLINE), "the worker never fetched"
            if how == "delete":
                await cache.delete(KEY)
            elif how == "delete_prefix":
                assert await cache.delete_prefix("customer:") == 0  # nothing stored yet
            go.set()
        seen = json.loads(Path(job.out).read_text())
        assert seen["result"] == BEFORE  # the worker's caller got its fetch either way
        expected = BEFORE if how is None else MISS
        assert seen["after"] == expected
        assert await cache.get(KEY, MISS) == expected
