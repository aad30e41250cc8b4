"""Exactly-once across processes: spawned workers, each with its own event loop, on one store.

Every backend in `backends.BACKENDS` whose stores share data between processes
(`shared=True`: sqlite, and redis once it is added there) runs these tests. Handlers
log each run as one O_APPEND line, so the log is the ground truth of what ran.
Time is a clock file that every process reads (`FileClock`): the parent moves it
past a lease, so takeovers need no sleeping.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import math
import multiprocessing
import os
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from multiprocessing.context import SpawnContext
from multiprocessing.synchronize import Barrier, Event
from pathlib import Path
from typing import Any

import pytest

import kvcache
from backends import fresh_namespace
from kvcache import AlreadyInProgress, ClaimLost, Limits
from kvcache.idempotency import Idempotency, Outcome
from processes import start_and_join

PROCESSES = 4
DEADLINE = 30.0  # seconds a worker keeps retrying before it gives up (a hang guard, not a timing)


@dataclass(frozen=True)
class FileClock:
    """A clock every process reads from one file; only the test moves it."""

    path: str

    def __call__(self) -> float:
        return float(Path(self.path).read_text())

    def set(self, now: float) -> None:
        tmp = f"{self.path}.{os.getpid()}.tmp"
        Path(tmp).write_text(repr(now))
        os.replace(tmp, self.path)


@dataclass(frozen=True)
class Job:
    """What one worker process does: `run` every key until it has an Outcome."""

    url: str
    namespace: str
    log: str  # one "key pid" line per handler run
    keys: tuple[str, ...]
    clock: FileClock | None = None
    lease_ttl: int = 300
    fail_first: str | None = None  # a directory: the first run of each key raises
    hang: bool = False  # the handler logs, signals `ready`, then never returns


def _log_run(log: str, key: str) -> None:
    fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{key} {os.getpid()}\n".encode())
    finally:
        os.close(fd)


def _first_run(directory: str, key: str) -> bool:
    try:
        os.close(os.open(os.path.join(directory, key), os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return False
    return True


def _handler(job: Job, key: str, ready: Event | None) -> Callable[[], Awaitable[Any]]:
    async def handler() -> dict[str, Any]:
        _log_run(job.log, key)
        if job.hang and ready is not None:
            ready.set()
            await asyncio.sleep(3600)
        # Long enough that the other processes' claims (slower on a network store such
        # as Redis) arrive while some handler still runs, so the runs really contend.
        await asyncio.sleep(random.uniform(0.03, 0.06))
        if job.fail_first is not None and _first_run(job.fail_first, key):
            raise RuntimeError("the first delivery fails")
        return {"key": key, "pid": os.getpid()}

    return handler


async def _until_done(
    idem: Idempotency, key: str, handler: Callable[[], Awaitable[Any]]
) -> tuple[Outcome, int]:
    """Deliver like a sender that retries on a busy key or a failed handler.

    Returns the outcome and how many times the key was found busy.
    """
    deadline, busy = time.monotonic() + DEADLINE, 0
    while True:
        try:
            return await idem.run(key, handler), busy
        except (AlreadyInProgress, RuntimeError) as exc:
            busy += isinstance(exc, AlreadyInProgress)
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(random.uniform(0.001, 0.01))


async def _work(job: Job, barrier: Barrier | None, ready: Event | None) -> list[Any]:
    limits = Limits.relaxed() if job.lease_ttl < 60 else None
    clock = job.clock if job.clock is not None else time.time
    async with kvcache.open_kv(job.url, namespace=job.namespace, limits=limits, clock=clock) as kv:
        idem = Idempotency(kv, lease_ttl=job.lease_ttl)
        if barrier is not None:
            barrier.wait(DEADLINE)
        keys = random.sample(job.keys, len(job.keys))
        outcomes = await asyncio.gather(
            *(_until_done(idem, key, _handler(job, key, ready)) for key in keys),
            return_exceptions=True,
        )
    return [
        [key, None, repr(done), 0]
        if isinstance(done, BaseException)
        else [key, done[0].duplicate, done[0].result, done[1]]
        for key, done in zip(keys, outcomes, strict=True)
    ]


def _worker(job: Job, barrier: Barrier | None, ready: Event | None, out: str) -> None:
    Path(out).write_text(json.dumps(asyncio.run(_work(job, barrier, ready))))


# -- the parent's side -----------------------------------------------------------------


@pytest.fixture
def ctx() -> SpawnContext:
    return multiprocessing.get_context("spawn")


def run_workers(ctx: SpawnContext, jobs: list[Job], tmp_path: Path) -> list[list[Any]]:
    """Start all jobs together (one barrier), wait for them, return their outcomes."""
    barrier = ctx.Barrier(len(jobs))
    outs = [tmp_path / f"outcomes-{index}.json" for index in range(len(jobs))]
    procs = [
        ctx.Process(target=_worker, args=(job, barrier, None, str(out)), daemon=True)
        for job, out in zip(jobs, outs, strict=True)
    ]
    start_and_join(procs, DEADLINE + 30)
    return [json.loads(out.read_text()) for out in outs]


def runs_by_key(log: Path) -> dict[str, list[int]]:
    """Which processes ran each key's handler, in order."""
    runs: dict[str, list[int]] = {}
    for line in log.read_text().splitlines():
        key, pid = line.split()
        runs.setdefault(key, []).append(int(pid))
    return runs


def check_agreement(outcomes: list[list[Any]], keys: list[str]) -> dict[str, Any]:
    """Every worker got an Outcome per key; one original each, all with the same result."""
    by_key: dict[str, list[tuple[bool, Any]]] = {key: [] for key in keys}
    for worker in outcomes:
        for key, duplicate, result, _ in worker:
            assert duplicate is not None, f"a worker's run of {key} raised {result}"
            by_key[key].append((duplicate, result))
    results = {}
    for key, seen in by_key.items():
        assert [duplicate for duplicate, _ in seen].count(False) == 1, (key, seen)
        assert len({json.dumps(result, sort_keys=True) for _, result in seen}) == 1, (key, seen)
        results[key] = seen[0][1]
    return results


def start_clock(tmp_path: Path) -> FileClock:
    clock = FileClock(str(tmp_path / "clock"))
    clock.set(math.floor(time.time()) + 0.5)
    return clock


# -- the tests ---------------------------------------------------------------------------


def test_200_concurrent_runs_on_50_keys_run_each_handler_once(
    ctx: SpawnContext, shared_url: str, tmp_path: Path
) -> None:
    keys = [f"order-{index}" for index in range(50)]
    log = tmp_path / "runs.log"
    job = Job(shared_url, fresh_namespace(), str(log), tuple(keys))

    outcomes = run_workers(ctx, [job] * PROCESSES, tmp_path)

    assert sum(len(worker) for worker in outcomes) == 200
    assert sum(busy for worker in outcomes for *_, busy in worker) > 0, "no run met another"
    runs = runs_by_key(log)
    assert sorted(runs) == sorted(keys)
    assert Counter(len(pids) for pids in runs.values()) == {1: 50}
    results = check_agreement(outcomes, keys)
    for key, result in results.items():
        assert result == {"key": key, "pid": runs[key][0]}


def test_failing_handler_runs_again_on_retry_and_only_then(
    ctx: SpawnContext, shared_url: str, tmp_path: Path
) -> None:
    keys = [f"refund-{index}" for index in range(10)]
    log, failed = tmp_path / "runs.log", tmp_path / "failed"
    failed.mkdir()
    job = Job(shared_url, fresh_namespace(), str(log), tuple(keys), fail_first=str(failed))

    outcomes = run_workers(ctx, [job] * PROCESSES, tmp_path)

    runs = runs_by_key(log)
    assert {key: len(pids) for key, pids in runs.items()} == {key: 2 for key in keys}
    results = check_agreement(outcomes, keys)
    for key, result in results.items():
        assert result == {"key": key, "pid": runs[key][1]}


async def test_killed_workers_key_is_taken_over_after_its_lease(
    ctx: SpawnContext, shared_url: str, tmp_path: Path
) -> None:
    key, lease, log = "order-killed", 2, tmp_path / "runs.log"
    clock = start_clock(tmp_path)
    victim_job = Job(
        shared_url, fresh_namespace(), str(log), (key,), clock=clock, lease_ttl=lease, hang=True
    )
    ready = ctx.Event()
    victim = ctx.Process(
        target=_worker, args=(victim_job, None, ready, str(tmp_path / "victim.json")), daemon=True
    )
    victim.start()
    try:
        assert ready.wait(DEADLINE), "the victim never started its handler"
    finally:
        victim.kill()
        victim.join()
    assert victim.exitcode == -9

    async with kvcache.open_kv(
        shared_url, namespace=victim_job.namespace, limits=Limits.relaxed(), clock=clock
    ) as kv:
        idem = Idempotency(kv, lease_ttl=lease)
        with pytest.raises(AlreadyInProgress):
            await idem.run(key, _handler(victim_job, key, None))
        clock.set(clock() + lease)

        takeover = dataclasses.replace(victim_job, hang=False)
        outcomes = run_workers(ctx, [takeover] * PROCESSES, tmp_path)

        victim_pid, taker_pid = runs_by_key(log)[key]
        assert victim_pid == victim.pid
        assert check_agreement(outcomes, [key]) == {key: {"key": key, "pid": taker_pid}}
        assert await idem.run(key, _handler(victim_job, key, None)) == Outcome(
            {"key": key, "pid": taker_pid}, duplicate=True
        )


async def test_late_original_is_refused_after_other_processes_took_over(
    ctx: SpawnContext, shared_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    key, lease, log = "order-late", 2, tmp_path / "runs.log"
    clock = start_clock(tmp_path)
    job = Job(shared_url, fresh_namespace(), str(log), (key,), clock=clock, lease_ttl=lease)

    async with kvcache.open_kv(
        shared_url, namespace=job.namespace, limits=Limits.relaxed(), clock=clock
    ) as kv:
        idem = Idempotency(kv, lease_ttl=lease)
        with caplog.at_level(logging.WARNING, logger="kvcache.idempotency"):
            with pytest.raises(ClaimLost):
                async with idem.claim(key) as original:
                    clock.set(clock() + lease)
                    outcomes = run_workers(ctx, [job] * PROCESSES, tmp_path)
                    await original.complete({"key": key, "pid": "late original"})
        assert "this result is refused" in caplog.text
        (taker_pid,) = runs_by_key(log)[key]
        winner = {"key": key, "pid": taker_pid}
        assert check_agreement(outcomes, [key]) == {key: winner}
        assert await idem.run(key, _handler(job, key, None)) == Outcome(winner, duplicate=True)
