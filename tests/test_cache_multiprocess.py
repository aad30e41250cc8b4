"""Stampede control across processes: 4 spawned processes x 25 callers, one origin call.

`run_stampede(url, tmp_path)` is the whole experiment for one store URL, so any
backend whose stores share data between processes runs it (the `shared_url`
fixture takes every such backend in `backends.BACKENDS`). Origin calls are
counted as O_APPEND lines in a file: the ground truth of what ran.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import os
from dataclasses import dataclass
from multiprocessing.synchronize import Barrier
from pathlib import Path

import pytest

import kvcache
from backends import fresh_namespace
from kvcache.cache import Cache
from processes import start_and_join

DEADLINE = 30.0  # a hang guard for joins and the barrier, not a timing


@dataclass(frozen=True)
class Job:
    url: str
    namespace: str
    key: str
    log: str  # one line per origin call
    callers: int
    lock: bool
    fetch_seconds: float


async def _work(job: Job, barrier: Barrier) -> list[object]:
    async with kvcache.open_kv(job.url, namespace=job.namespace) as kv:
        cache = Cache(kv, lock_timeout=DEADLINE)

        async def fetch() -> dict[str, int]:
            fd = os.open(job.log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, f"{os.getpid()}\n".encode())
            finally:
                os.close(fd)
            await asyncio.sleep(job.fetch_seconds)  # the origin is slow: the race is real
            return {"pid": os.getpid()}

        barrier.wait(DEADLINE)
        return await asyncio.gather(
            *(cache.get_or_set(job.key, fetch, lock=job.lock) for _ in range(job.callers))
        )


def _worker(job: Job, barrier: Barrier, out: str) -> None:
    Path(out).write_text(json.dumps(asyncio.run(_work(job, barrier))))


def run_stampede(
    url: str,
    tmp_path: Path,
    *,
    processes: int = 4,
    callers: int = 25,
    lock: bool = True,
    fetch_seconds: float = 0.2,
) -> int:
    """Start `processes` x `callers` concurrent get_or_set on one missing key; return
    how many times the origin was called. Every caller must get the same value."""
    ctx = multiprocessing.get_context("spawn")
    log = tmp_path / "origin.log"
    job = Job(
        url, fresh_namespace(), "customer:email:a@b.c", str(log), callers, lock, fetch_seconds
    )
    barrier = ctx.Barrier(processes)
    outs = [tmp_path / f"results-{index}.json" for index in range(processes)]
    procs = [ctx.Process(target=_worker, args=(job, barrier, str(out))) for out in outs]
    start_and_join(procs, DEADLINE + 30)
    results = [result for out in outs for result in json.loads(out.read_text())]
    assert len(results) == processes * callers
    if lock:
        assert len({json.dumps(result) for result in results}) == 1, results
    return len(log.read_text().splitlines()) if log.exists() else 0


@pytest.mark.slow
def test_lock_makes_4_processes_x_25_callers_fetch_once(shared_url: str, tmp_path: Path) -> None:
    assert run_stampede(shared_url, tmp_path) == 1


@pytest.mark.slow
def test_without_lock_each_process_fetches(shared_url: str, tmp_path: Path) -> None:
    """The control: single-flight alone is per process, so the lock above is what counts."""
    assert run_stampede(shared_url, tmp_path, lock=False, fetch_seconds=1.0) > 1
