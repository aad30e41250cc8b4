"""Store micro-benchmark: kvcache's sqlite and memory stores beside their peers.

Reproduce (writes the Markdown table to stdout):

    pip install -e '.[bench]'
    python bench/bench_store.py

Setup: 10,000 keys with ~200-byte JSON values in each store, in a fresh temporary
directory. Peers: diskcache.Cache, raw sqlite3 (autocommit, WAL, synchronous=NORMAL,
a WITHOUT ROWID table), cachetools.TTLCache. kvcache's figures are awaited calls on
a running asyncio loop; the peers are synchronous calls. µs per operation.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import sqlite3
import sys
import tempfile
import time
from typing import Any

import cachetools
import diskcache

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import kvcache
from _timing import Result, measure, measure_async, render_table

N_KEYS = 10_000
VALUE = json.dumps(
    {
        "id": "gid://shopify/Customer/1234567890",
        "email": "dr.jane.doe@example-clinic.com",
        "tags": ["healthcare", "verified", "samples"],
        "state": "ENABLED",
        "note": "x" * 40,
    }
)
KEYS = [f"customer:email:{i:05d}@example.com" for i in range(N_KEYS)]
MISSING = [f"missing:{i}" for i in range(N_KEYS)]
TTL = 3600


def raw_sqlite(path: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("CREATE TABLE kv (key TEXT PRIMARY KEY, value BLOB, expires REAL) WITHOUT ROWID")
    conn.executemany("INSERT INTO kv VALUES (?, ?, ?)", [(k, VALUE.encode(), None) for k in KEYS])
    return conn


async def bench_kvcache(name: str, url: str, results: list[Result]) -> None:
    kv = await kvcache.open_kv(url, namespace="bench")
    for start in range(0, N_KEYS, 10_000):
        await kv.put_many([{"key": k, "value": VALUE} for k in KEYS[start : start + 10_000]])
    n = N_KEYS

    async def get_hit(i: int) -> Any:
        return await kv.get(KEYS[i % n])

    async def get_miss(i: int) -> Any:
        return await kv.get(MISSING[i % n])

    async def put(i: int) -> Any:
        return await kv.put(KEYS[i % n], VALUE, expiration_ttl=TTL)

    async def list_100(i: int) -> Any:
        return await kv.list(prefix="customer:", limit=100)

    async def get_many(i: int) -> Any:
        start = (i * 100) % (n - 100)
        return await kv.get_many(KEYS[start : start + 100])

    results.append(await measure_async(f"{name}: get (hit)", get_hit))
    results.append(await measure_async(f"{name}: get (miss)", get_miss))
    results.append(await measure_async(f"{name}: put (expiration_ttl)", put, samples=100))
    results.append(await measure_async(f"{name}: list 100 of 10,000", list_100, inner=20))
    results.append(await measure_async(f"{name}: get_many 100", get_many, inner=20))
    await kv.close()


def bench_diskcache(directory: str, results: list[Result]) -> None:
    cache = diskcache.Cache(directory)
    for k in KEYS:
        cache.set(k, VALUE)
    n = N_KEYS
    results.append(measure("diskcache: get (hit)", lambda i: cache.get(KEYS[i % n])))
    results.append(measure("diskcache: get (miss)", lambda i: cache.get(MISSING[i % n])))
    results.append(
        measure(
            "diskcache: set (expire)",
            lambda i: cache.set(KEYS[i % n], VALUE, expire=TTL),
            samples=100,
        )
    )
    results.append(
        measure(
            "diskcache: iterkeys 100",
            lambda i: list(itertools.islice(cache.iterkeys(), 100)),
            inner=20,
        )
    )

    def many(i: int) -> Any:
        start = (i * 100) % (n - 100)
        return {k: cache.get(k) for k in KEYS[start : start + 100]}

    results.append(measure("diskcache: 100 × get", many, inner=20))
    cache.close()


def bench_raw_sqlite(path: str, results: list[Result]) -> None:
    conn = raw_sqlite(path)
    n = N_KEYS
    get_sql = "SELECT value, expires FROM kv WHERE key = ?"
    results.append(
        measure(
            "raw sqlite3: get (hit)", lambda i: conn.execute(get_sql, (KEYS[i % n],)).fetchone()
        )
    )
    results.append(
        measure(
            "raw sqlite3: get (miss)", lambda i: conn.execute(get_sql, (MISSING[i % n],)).fetchone()
        )
    )
    put_sql = "INSERT OR REPLACE INTO kv VALUES (?, ?, ?)"
    results.append(
        measure(
            "raw sqlite3: put (expires)",
            lambda i: conn.execute(put_sql, (KEYS[i % n], VALUE.encode(), time.time() + TTL)),
            samples=100,
        )
    )
    list_sql = "SELECT key, expires FROM kv WHERE key >= ? ORDER BY key LIMIT 100"
    results.append(
        measure(
            "raw sqlite3: list 100",
            lambda i: conn.execute(list_sql, ("customer:",)).fetchall(),
            inner=20,
        )
    )
    many_sql = "SELECT key, value FROM kv WHERE key IN ({})".format(",".join("?" * 100))

    def many(i: int) -> Any:
        start = (i * 100) % (n - 100)
        return conn.execute(many_sql, KEYS[start : start + 100]).fetchall()

    results.append(measure("raw sqlite3: get_many 100", many, inner=20))
    conn.close()


def bench_cachetools(results: list[Result]) -> None:
    cache: cachetools.TTLCache[str, str] = cachetools.TTLCache(maxsize=2 * N_KEYS, ttl=TTL)
    for k in KEYS:
        cache[k] = VALUE
    n = N_KEYS
    results.append(measure("cachetools.TTLCache: get (hit)", lambda i: cache.get(KEYS[i % n])))
    results.append(measure("cachetools.TTLCache: get (miss)", lambda i: cache.get(MISSING[i % n])))
    results.append(
        measure("cachetools.TTLCache: set", lambda i: cache.__setitem__(KEYS[i % n], VALUE))
    )
    results.append(
        measure("cachetools.TTLCache: sorted keys 100", lambda i: sorted(cache)[:100], inner=5)
    )

    def many(i: int) -> Any:
        start = (i * 100) % (n - 100)
        return {k: cache.get(k) for k in KEYS[start : start + 100]}

    results.append(measure("cachetools.TTLCache: 100 × get", many, inner=20))


def ratio(results: list[Result], a: str, b: str) -> float:
    by_name = {r.name: r.median for r in results}
    return by_name[a] / by_name[b]


def main() -> None:
    results: list[Result] = []
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(bench_kvcache("kvcache sqlite", f"sqlite:///{tmp}/kv.sqlite3", results))
        asyncio.run(bench_kvcache("kvcache memory", "memory://", results))
        bench_diskcache(os.path.join(tmp, "diskcache"), results)
        bench_raw_sqlite(os.path.join(tmp, "raw.sqlite3"), results)
        bench_cachetools(results)
    print(render_table(f"Store operations, {N_KEYS:,} keys of ~{len(VALUE)}-byte JSON", results))
    checks = [
        (
            "sqlite get (hit) / diskcache get (hit)",
            ratio(results, "kvcache sqlite: get (hit)", "diskcache: get (hit)"),
            1.0,
        ),
        (
            "sqlite get (hit) / raw sqlite3 get (hit)",
            ratio(results, "kvcache sqlite: get (hit)", "raw sqlite3: get (hit)"),
            1.5,
        ),
        (
            "sqlite put (ttl) / diskcache set (expire)",
            ratio(results, "kvcache sqlite: put (expiration_ttl)", "diskcache: set (expire)"),
            0.5,
        ),
    ]
    print("| target | measured | limit | met |\n|---|---|---|---|")
    for label, value, limit in checks:
        print(f"| {label} | {value:.2f}× | ≤ {limit}× | {'yes' if value <= limit else 'NO'} |")
    memory_get = {r.name: r.median for r in results}["kvcache memory: get (hit)"]
    met = "yes" if memory_get <= 2.0 else "NO"
    print(f"| memory get (hit) | {memory_get:.2f} µs | ≤ 2 µs | {met} |")


if __name__ == "__main__":
    main()
