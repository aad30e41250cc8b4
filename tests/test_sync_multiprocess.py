"""The sync facade across processes x threads (prefork Celery, gunicorn sync workers).

3 spawned processes x 10 threads each, on one store URL shared between processes:
a `get_or_set(lock=True)` stampede calls the origin once, and one idempotency key's
handler runs once. Runs are counted as O_APPEND lines in a file, the ground truth.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from multiprocessing.synchronize import Barrier
from pathlib import Path
from typing import Any

import pytest

import kvcache
import kvcache.sync
from backends import fresh_namespace
from processes import start_and_join

PROCESSES, THREADS = 3, 10
DEADLINE = 30.0  # a hang guard for joins and barriers, not a timing


@dataclass(frozen=True)
class Job:
    url: str
    namespace: str
    log: str  # one line per origin or handler run
    kind: str  # "cache" or "idempotency"


def _note_run(log: str) -> None:
    fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{os.getpid()}:{threading.current_thread().name}\n".encode())
    finally:
        os.close(fd)
    time.sleep(0.3)  # a slow origin: the race is real


def _call(job: Job, kv: kvcache.sync.KVStore) -> Any:
    if job.kind == "cache":
        cache = kvcache.sync.Cache(kv, lock_timeout=DEADLINE)

        def fetch() -> dict[str, int]:
            _note_run(job.log)
            return {"pid": os.getpid()}

        return cache.get_or_set("customer:email:a@b.c", fetch, lock=True)

    def handler() -> str:
        _note_run(job.log)
        return "handled"

    try:
        outcome = kvcache.sync.Idempotency(kv).run("shop:webhook-1", handler)
    except kvcache.AlreadyInProgress:
        return "in progress"
    return "duplicate" if outcome.duplicate else outcome.result


def _worker(job: Job, barrier: Barrier, out: str) -> None:
    with kvcache.sync.open_kv(job.url, namespace=job.namespace) as kv:
        local = threading.Barrier(THREADS)

        def one(_: int) -> Any:
            local.wait(DEADLINE)
            return _call(job, kv)

        barrier.wait(DEADLINE)
        with ThreadPoolExecutor(THREADS) as pool:
            results = list(pool.map(one, range(THREADS)))
    Path(out).write_text(json.dumps(results))


def run(url: str, tmp_path: Path, kind: str) -> tuple[int, list[Any]]:
    """(runs of the origin or handler, every caller's result)."""
    ctx = multiprocessing.get_context("spawn")
    job = Job(url, fresh_namespace(), str(tmp_path / "runs.log"), kind)
    barrier = ctx.Barrier(PROCESSES)
    outs = [tmp_path / f"results-{index}.json" for index in range(PROCESSES)]
    procs = [ctx.Process(target=_worker, args=(job, barrier, str(out))) for out in outs]
    start_and_join(procs, DEADLINE + 30)
    results = [result for out in outs for result in json.loads(out.read_text())]
    assert len(results) == PROCESSES * THREADS
    log = Path(job.log)
    return (len(log.read_text().splitlines()) if log.exists() else 0), results


@pytest.mark.slow
def test_lock_makes_3_processes_x_10_threads_fetch_once(shared_url: str, tmp_path: Path) -> None:
    runs, results = run(shared_url, tmp_path, "cache")
    assert runs == 1
    assert len({json.dumps(result) for result in results}) == 1


@pytest.mark.slow
def test_one_key_is_handled_once_by_3_processes_x_10_threads(
    shared_url: str, tmp_path: Path
) -> None:
    runs, results = run(shared_url, tmp_path, "idempotency")
    assert runs == 1
    assert results.count("handled") == 1
    assert set(results) <= {"handled", "in progress", "duplicate"}
