"""Dashboard data benchmark: `GET /api/dashboard` under 200 concurrent requests.

Reproduce (starts `kvcache serve` itself on a free 127.0.0.1 port; Markdown to stdout):

    pip install -e '.[service]'
    python bench/bench_dashboard.py              # --seconds 8 --connections 200 --workers 1

The service runs on the embedded SQLite store and a SQLite app database whose history
holds a day of minutes before it starts (cache counters of 5 key families, webhook
outcomes of 3 topics, store operations of 2 namespaces x 4 operations x 5 families:
about 117,000 rows), and 300 signed deliveries are sent through it first (the delivery
log). Then `--connections` keep-alive connections send GET requests back to back for
`--seconds` (after a 1 s warm-up), through bench_webhooks' raw-socket client: the
dashboard's data for the last 60 minutes (what the page asks every 5 s), and, in the
same run on the same server, `/api/cache/stats` (the smallest admin route: the cost of
HTTP, the admin rule and the summed counters alone) as the peer.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import statistics
import tempfile
import time
from itertools import repeat
from pathlib import Path

from _load import WARMUP, Tally, closed
from bench_webhooks import build_requests, server
from kvcache.shopify.db import migrate, open_database
from kvcache.shopify.history import History, minute_of

FAMILIES = ("customer:email", "customer:id", "shop:config", "shop:token", "customer:emails")
COUNTERS = ("hits", "misses", "stale_hits", "sets", "deletes", "errors", "skipped")
TOPICS = ("customers/update", "orders/create", "app/uninstalled")
OPS = ("read", "write", "delete", "list")
MINUTES = 24 * 60


async def populate(database: str) -> int:
    """A day of per-minute history, as the service's writers would have left it."""
    engine = open_database(database)
    await migrate(engine)
    now = time.time()
    history = History(engine)
    rows = 0
    for back in range(MINUTES):
        at = minute_of(now) - 60 * back
        for i, family in enumerate(FAMILIES):
            for j, counter in enumerate(COUNTERS):
                history.add("cache", {"cache": "CACHE", "family": family, "counter": counter},
                            1 + (i * 7 + j + back) % 40, at=at)  # fmt: skip
                rows += 1
            for namespace in ("CACHE", "WEBHOOKS"):
                for op in OPS:
                    labels = {"namespace": namespace, "op": op, "family": family}
                    history.add("kv_ops", labels, 1 + (i + back) % 90, at=at)
                    rows += 1
        for topic in TOPICS:
            for outcome in ("processed", "failed"):
                history.add("webhooks", {"topic": topic, "outcome": outcome}, 1 + back % 5, at=at)
                rows += 1
        if back % 60 == 59:
            await history.flush()
    await history.flush()
    await engine.dispose()
    return rows


async def hammer(port: int, request: bytes, connections: int, seconds: float) -> dict[str, float]:
    tally = Tally()
    start = time.perf_counter()
    record_from, until = start + WARMUP, start + WARMUP + seconds
    before = resource.getrusage(resource.RUSAGE_SELF)
    await asyncio.gather(
        *(closed(port, repeat(request), record_from, until, tally) for _ in range(connections))
    )
    latencies, statuses = tally.latencies, tally.statuses
    wall = time.perf_counter() - record_from
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    ms = sorted(seconds * 1000 for seconds in latencies)
    return {
        "rps": len(ms) / wall,
        "mean": statistics.fmean(ms),
        "median": statistics.median(ms),
        "p99": ms[min(len(ms) - 1, int(len(ms) * 0.99))],
        "max": ms[-1],
        "non_2xx": sum(count for status, count in statuses.items() if not 200 <= status < 300),
        "client_cpu": cpu / wall,
    }


async def deliveries(port: int, count: int) -> None:
    """Fill the delivery log through the service (built-in customers/update handler)."""
    requests = iter(build_requests(count, seed=12))
    tally = Tally()
    far = time.perf_counter() + 600
    await asyncio.gather(*(closed(port, requests, 0.0, far, tally) for _ in range(10)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--connections", type=int, default=200)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-dashboard-") as tmp:
        directory = Path(tmp)
        (directory / ".kvcache").mkdir()
        rows = asyncio.run(populate(f"sqlite+aiosqlite:///{directory}/.kvcache/app.db"))
        with server("kvcache", args.workers, directory) as (port, _pid):
            asyncio.run(deliveries(port, 300))
            results = {}
            for path in ("/api/dashboard?minutes=60", "/api/cache/stats"):
                request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()
                results[path] = asyncio.run(hammer(port, request, args.connections, args.seconds))
    print(
        f"`kvcache serve --workers {args.workers}`, SQLite store and app database "
        f"({rows:,} history rows, 300 deliveries), {args.connections} concurrent "
        f"connections, {args.seconds:g} s each; latency in ms.\n"
    )
    print("| route | req/s | mean | median | p99 | max | non-2xx | client CPU |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for path, r in results.items():
        print(
            f"| `GET {path}` | {r['rps']:,.0f} | {r['mean']:.1f} | {r['median']:.1f} | "
            f"{r['p99']:.1f} | {r['max']:.1f} | {r['non_2xx']:.0f} | {r['client_cpu']:.0%} |"
        )


if __name__ == "__main__":
    main()
