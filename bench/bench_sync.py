"""The sync facade's cost per call: `kvcache.sync` beside the awaited async call, in one run.

Reproduce (writes the Markdown tables to stdout):

    python bench/bench_sync.py

What runs, on one SQLite file (~205-byte JSON value, as bench_store.py):
- store `get` of a hit, store `put` with `expiration_ttl`, `Cache.get` of a hit
  (no local tier), and `Cache.get` served by the local tier (`local_ttl`: no store
  call at all, so its sync figure is the thread hop alone), each awaited on a
  running asyncio loop (the async API), and called from the main thread through
  `kvcache.sync` (which hands the same coroutine to the store's private loop
  thread and waits for it);
- the peer for the hop itself: `asyncio.run_coroutine_threadsafe(...).result()` of
  a coroutine that returns at once, on a loop running in its own thread (the
  standard library's way to do what the facade does);
- the sync `get` hit from 4 threads at once (µs of wall time per call over all
  threads), and from a worker thread of a running loop (`asyncio.to_thread`, the
  way an async app would call sync code).

Rounds are interleaved (async, then sync, ROUNDS times) and every round's samples
are pooled, so a burst of load elsewhere lands on both sides alike. Each sample is
a batch of `inner` calls; figures are µs per call. The overhead is the sync
figure minus the async one: the thread hop (wake the loop, run, wake the caller).
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import sqlite3
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import kvcache
import kvcache.sync
from _timing import Result, sample, sample_async, summarise

ROUNDS = 5
INNER = 100
SAMPLES = 40  # per round: ROUNDS x SAMPLES batches per op in all
THREADS = 4
VALUE = json.dumps(
    {
        "id": "gid://shopify/Customer/1234567890",
        "email": "dr.jane.doe@example-clinic.com",
        "tags": ["healthcare", "verified", "samples"],
        "state": "ENABLED",
        "note": "x" * 40,
    }
)
NAMESPACE = "bench"
OPS = [
    "store get (hit)",
    "store put (expiration_ttl)",
    "Cache.get (hit)",
    "Cache.get (hit, local_ttl)",
]


async def async_round(url: str, pooled: dict[str, list[float]]) -> None:
    """One round of awaited calls on this loop (a fresh async store each round)."""
    async with kvcache.open_kv(url, namespace=NAMESPACE) as kv:
        cache = kvcache.Cache(kv)
        local = kvcache.Cache(kv, local_ttl=60)
        ops: dict[str, Callable[[int], Awaitable[object]]] = {
            "store get (hit)": lambda i: kv.get("hit"),
            "store put (expiration_ttl)": lambda i: kv.put(
                f"w{i % 1000}", VALUE, expiration_ttl=3600
            ),
            "Cache.get (hit)": lambda i: cache.get("cached"),
            "Cache.get (hit, local_ttl)": lambda i: local.get("cached"),
        }
        for name, op in ops.items():
            pooled[name] += await sample_async(op, inner=INNER, samples=SAMPLES)


def sync_ops(kv: kvcache.sync.KVStore) -> dict[str, Callable[[int], Any]]:
    cache = kvcache.sync.Cache(kv)
    local = kvcache.sync.Cache(kv, local_ttl=60)
    return {
        "store get (hit)": lambda i: kv.get("hit"),
        "store put (expiration_ttl)": lambda i: kv.put(f"w{i % 1000}", VALUE, expiration_ttl=3600),
        "Cache.get (hit)": lambda i: cache.get("cached"),
        "Cache.get (hit, local_ttl)": lambda i: local.get("cached"),
    }


def threaded_get(kv: kvcache.sync.KVStore, calls: int) -> list[float]:
    """µs of wall time per call while THREADS threads each make `calls` sync gets."""

    def work(barrier: threading.Barrier) -> None:
        barrier.wait()
        for _ in range(calls):
            kv.get("hit")

    out: list[float] = []
    for _ in range(SAMPLES // 4):
        barrier = threading.Barrier(THREADS + 1)
        threads = [threading.Thread(target=work, args=(barrier,)) for _ in range(THREADS)]
        for thread in threads:
            thread.start()
        barrier.wait()
        start = time.perf_counter()
        for thread in threads:
            thread.join()
        out.append((time.perf_counter() - start) / (calls * THREADS) * 1e6)
    return out


async def _nothing() -> None:
    return None


class StdlibHop:
    """The peer: `run_coroutine_threadsafe(...).result()` into a loop on its own thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever)
        self.thread.start()

    def __call__(self, i: int) -> None:
        asyncio.run_coroutine_threadsafe(_nothing(), self.loop).result()

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join()
        self.loop.close()


async def from_a_worker_thread(kv: kvcache.sync.KVStore) -> list[float]:
    """µs per sync get made on a worker thread of this running loop, batch by batch."""

    def batch() -> float:
        start = time.perf_counter()
        for _ in range(INNER):
            kv.get("hit")
        return (time.perf_counter() - start) / INNER * 1e6

    return [await asyncio.to_thread(batch) for _ in range(SAMPLES)]


def table(results: list[Result]) -> str:
    header = ["operation", "mean µs", "median µs", "p90 µs", "p99 µs", "max µs"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in results:
        cells = [r.name] + [f"{x:.2f}" for x in (r.mean, r.median, r.p90, r.p99, r.max)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    directory = tempfile.mkdtemp(prefix="kvcache-bench-sync-")
    url = f"sqlite:///{directory}/sync.sqlite3"
    async_samples: dict[str, list[float]] = {name: [] for name in OPS}
    sync_samples: dict[str, list[float]] = {name: [] for name in OPS}
    with kvcache.sync.open_kv(url, namespace=NAMESPACE) as kv:
        kv.put("hit", VALUE)
        kvcache.sync.Cache(kv).set("cached", json.loads(VALUE))
        ops = sync_ops(kv)
        hop, peer = StdlibHop(), []
        try:
            for _ in range(ROUNDS):
                asyncio.run(async_round(url, async_samples))
                for name, op in ops.items():
                    sync_samples[name] += sample(op, inner=INNER, samples=SAMPLES)
                peer += sample(hop, inner=INNER, samples=SAMPLES)
        finally:
            hop.close()
        threaded = threaded_get(kv, INNER * 10)
        worker = asyncio.run(from_a_worker_thread(kv))

    rows: list[Result] = []
    overhead: list[str] = []
    for name in OPS:
        mine, base = (
            summarise(f"sync {name}", sync_samples[name]),
            summarise(f"async {name}", async_samples[name]),
        )
        rows += [base, mine]
        overhead.append(
            f"| {name} | {mine.mean - base.mean:.2f} | {mine.median - base.median:.2f} | "
            f"{mine.median / base.median:.1f}x |"
        )
    rows.append(summarise("peer hop: run_coroutine_threadsafe(nothing).result()", peer))
    rows.append(summarise(f"sync store get (hit), {THREADS} threads at once (wall/call)", threaded))
    rows.append(summarise("sync store get (hit), from asyncio.to_thread", worker))

    print(
        f"Python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} CPUs, "
        f"SQLite {sqlite3.sqlite_version}; {ROUNDS} interleaved rounds x {SAMPLES} batches "
        f"of {INNER} calls per op\n"
    )
    print("### Per call: async (awaited on a running loop) and sync (kvcache.sync)\n")
    print(table(rows))
    print("### Overhead of the sync facade per call\n")
    print("| operation | mean µs added | median µs added | sync / async (median) |")
    print("|---|---|---|---|")
    print("\n".join(overhead))


if __name__ == "__main__":
    main()
