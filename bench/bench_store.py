"""Store micro-benchmark: kvcache's sqlite and memory stores beside their peers.

Reproduce (writes the Markdown table to stdout):

    pip install -e '.[bench]'
    python bench/bench_store.py

Setup: 10,000 keys with ~200-byte JSON values in each store, in a fresh temporary
directory. Peers: diskcache.Cache, raw sqlite3 (autocommit, WAL, synchronous=NORMAL,
kvcache's columns and primary key in a WITHOUT ROWID table, no secondary index),
cachetools.TTLCache. kvcache's figures are awaited calls on a running asyncio loop; the
peers are synchronous calls. µs per operation. Puts replace the 10,000 keys 10,000 times,
so their mean includes the WAL checkpoints (one every ~1,000 pages) that the median hides.

The targets are checked on ROUNDS alternating rounds on fresh stores (kvcache, raw sqlite3,
diskcache in turn, so a change of load on a shared machine hits all three alike): gets
compare medians, puts compare the mean over every put of every round (ROUND_PUTS a round).
The get ratio is also taken from `_paired.paired`: kvcache get and raw sqlite3 get timed
in alternating batches (A B B A ...) on one loop, each round's ratio the median of
kvcache's batches over raw's, the figure the median over rounds; that is the figure the
target is checked on, since batches a few milliseconds apart see the same load.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from typing import Any

import cachetools
import diskcache

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import kvcache
from _paired import paired
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
ROUNDS = 9
ROUND_PUTS = 3_000
GET_SQL = "SELECT value, expiration FROM kv WHERE namespace = ? AND key = ?"


RAW_SCHEMA = """CREATE TABLE kv (
    namespace TEXT NOT NULL, key TEXT NOT NULL, value BLOB NOT NULL, expiration INTEGER,
    metadata TEXT, PRIMARY KEY (namespace, key)) WITHOUT ROWID"""
RAW_PUT = "INSERT OR REPLACE INTO kv VALUES (?, ?, ?, ?, ?)"


def raw_sqlite(path: str) -> sqlite3.Connection:
    """kvcache's table without its code: the floor a kvcache put and get are held to."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute(RAW_SCHEMA)
    conn.executemany(RAW_PUT, [("bench", k, VALUE.encode(), None, None) for k in KEYS])
    return conn


def raw_get(conn: sqlite3.Connection, keys: list[str]) -> Callable[[int], Any]:
    return lambda i: conn.execute(GET_SQL, ("bench", keys[i % len(keys)])).fetchone()


def raw_get_live_text(conn: sqlite3.Connection) -> Callable[[int], Any]:
    """The same answer as kv.get: live rows only, the value decoded to str."""

    def get(i: int) -> Any:
        row = conn.execute(GET_SQL, ("bench", KEYS[i % N_KEYS])).fetchone()
        if row is None or (row[1] is not None and row[1] <= time.time()):
            return None
        return row[0].decode("utf-8", "replace")

    return get


def raw_put(conn: sqlite3.Connection) -> Callable[[int], Any]:
    def put(i: int) -> Any:
        expires = int(time.time()) + TTL
        return conn.execute(RAW_PUT, ("bench", KEYS[i % N_KEYS], VALUE.encode(), expires, None))

    return put


def kv_put(kv: kvcache.KVStore) -> Callable[[int], Awaitable[None]]:
    return lambda i: kv.put(KEYS[i % N_KEYS], VALUE, expiration_ttl=TTL)


def diskcache_set(cache: diskcache.Cache) -> Callable[[int], Any]:
    return lambda i: cache.set(KEYS[i % N_KEYS], VALUE, expire=TTL)


def filled_diskcache(directory: str) -> diskcache.Cache:
    cache = diskcache.Cache(directory)
    for k in KEYS:
        cache.set(k, VALUE)
    return cache


async def bench_kvcache(name: str, url: str, results: list[Result]) -> None:
    kv = await kvcache.open_kv(url, namespace="bench")
    for start in range(0, N_KEYS, 10_000):
        await kv.put_many([{"key": k, "value": VALUE} for k in KEYS[start : start + 10_000]])
    n = N_KEYS

    async def get_hit(i: int) -> Any:
        return await kv.get(KEYS[i % n])

    async def get_miss(i: int) -> Any:
        return await kv.get(MISSING[i % n])

    async def list_100(i: int) -> Any:
        return await kv.list(prefix="customer:", limit=100)

    async def get_many(i: int) -> Any:
        start = (i * 100) % (n - 100)
        return await kv.get_many(KEYS[start : start + 100])

    results.append(await measure_async(f"{name}: get (hit)", get_hit))
    results.append(await measure_async(f"{name}: get (miss)", get_miss))
    results.append(await measure_async(f"{name}: put (expiration_ttl)", kv_put(kv), samples=100))
    results.append(await measure_async(f"{name}: list 100 of 10,000", list_100, inner=20))
    results.append(await measure_async(f"{name}: get_many 100", get_many, inner=20))
    await kv.close()


def bench_diskcache(directory: str, results: list[Result]) -> None:
    cache = filled_diskcache(directory)
    n = N_KEYS
    results.append(measure("diskcache: get (hit)", lambda i: cache.get(KEYS[i % n])))
    results.append(measure("diskcache: get (miss)", lambda i: cache.get(MISSING[i % n])))
    results.append(measure("diskcache: set (expire)", diskcache_set(cache), samples=100))
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
    results.append(measure("raw sqlite3: get (hit)", raw_get(conn, KEYS)))
    results.append(measure("raw sqlite3: get (miss)", raw_get(conn, MISSING)))
    results.append(measure("raw sqlite3: put (expiration)", raw_put(conn), samples=100))
    list_sql = (
        "SELECT key, expiration, metadata FROM kv WHERE namespace = ? AND key >= ? "
        "ORDER BY key LIMIT 100"
    )
    results.append(
        measure(
            "raw sqlite3: list 100",
            lambda i: conn.execute(list_sql, ("bench", "customer:")).fetchall(),
            inner=20,
        )
    )
    many_sql = "SELECT key, value FROM kv WHERE namespace = ? AND key IN ({})".format(
        ",".join("?" * 100)
    )

    def many(i: int) -> Any:
        start = (i * 100) % (n - 100)
        return conn.execute(many_sql, ("bench", *KEYS[start : start + 100])).fetchall()

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


async def paired_get_ratios(tmp: str) -> list[float]:
    """kvcache get / raw sqlite3 get, one ratio per round of alternating batches."""
    kv = await kvcache.open_kv(f"sqlite:///{tmp}/paired.sqlite3", namespace="bench")
    await kv.put_many([{"key": k, "value": VALUE, "expiration_ttl": TTL} for k in KEYS])
    conn = raw_sqlite(os.path.join(tmp, "paired-raw.sqlite3"))
    try:
        _, _, ratios = await paired(
            lambda i: kv.get(KEYS[i % N_KEYS]),
            raw_get(conn, KEYS),
            rounds=ROUNDS,
            samples=40,
            inner=100,
            b_is_sync=True,
        )
    finally:
        await kv.close()
        conn.close()
    return ratios


async def head_to_head(tmp: str) -> dict[str, list[Result]]:
    """ROUNDS rounds, each timing kvcache, raw sqlite3 and diskcache one after the other."""
    kv = await kvcache.open_kv(f"sqlite:///{tmp}/rounds.sqlite3", namespace="bench")
    await kv.put_many([{"key": k, "value": VALUE, "expiration_ttl": TTL} for k in KEYS])
    conn = raw_sqlite(os.path.join(tmp, "rounds-raw.sqlite3"))
    cache = filled_diskcache(os.path.join(tmp, "rounds-diskcache"))
    kv_get = lambda i: kv.get(KEYS[i % N_KEYS])  # noqa: E731
    samples = ROUND_PUTS // 100
    out: dict[str, list[Result]] = {}
    for _ in range(ROUNDS):
        timed = [
            ("kvcache get", await measure_async("", kv_get, samples=50)),
            ("raw get", measure("", raw_get(conn, KEYS), samples=50)),
            ("raw get, live rows as str", measure("", raw_get_live_text(conn), samples=50)),
            ("kvcache put", await measure_async("", kv_put(kv), samples=samples)),
            ("raw put", measure("", raw_put(conn), samples=samples)),
            ("diskcache set", measure("", diskcache_set(cache), samples=samples)),
        ]
        for name, result in timed:
            out.setdefault(name, []).append(result)
    await kv.close()
    conn.close()
    cache.close()
    return out


def head_to_head_checks(
    rounds: dict[str, list[Result]], get_ratios: list[float]
) -> list[tuple[str, float, float]]:
    """Print the rounds; gets compare medians, puts the mean over every put of every round."""
    figures: dict[str, float] = {}
    print(f"### Head to head: {ROUNDS} alternating rounds, {ROUND_PUTS:,} puts each\n")
    print("| operation | figure | µs | µs in each round |\n|---|---|---|---|")
    for name, results in rounds.items():
        stat = "mean" if "put" in name or "set" in name else "median"
        each = [getattr(r, stat) for r in results]
        figures[name] = statistics.median(each) if stat == "median" else statistics.fmean(each)
        shown = ", ".join(f"{value:.1f}" for value in each)
        print(f"| {name} | {stat} | {figures[name]:.2f} | {shown} |")
    print()
    get_ratio = statistics.median(
        k.median / r.median for k, r in zip(rounds["kvcache get"], rounds["raw get"], strict=True)
    )
    put = figures["kvcache put"]
    same_answer = figures["kvcache get"] / figures["raw get, live rows as str"]
    print(f"(kvcache get / raw get that also drops expired rows and decodes: {same_answer:.2f}×)")
    print(f"(kvcache get / raw get, rounds taken one after the other: {get_ratio:.2f}×)")
    shown = ", ".join(f"{r:.3f}" for r in get_ratios)
    print(f"(kvcache get / raw get in alternating batches, each round: {shown})\n")
    return [
        (
            "sqlite get (hit) / raw sqlite3 get (hit), same schema, paired medians",
            statistics.median(get_ratios),
            1.2,
        ),
        (
            "sqlite put (ttl) / raw sqlite3 put, means with checkpoints",
            put / figures["raw put"],
            1.3,
        ),
        ("sqlite put (ttl) / diskcache set (expire), means", put / figures["diskcache set"], 0.35),
    ]


def ratio(results: list[Result], a: str, b: str, stat: str = "median") -> float:
    by_name = {r.name: getattr(r, stat) for r in results}
    return float(by_name[a] / by_name[b])


def main() -> None:
    results: list[Result] = []
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(bench_kvcache("kvcache sqlite", f"sqlite:///{tmp}/kv.sqlite3", results))
        asyncio.run(bench_kvcache("kvcache memory", "memory://", results))
        bench_diskcache(os.path.join(tmp, "diskcache"), results)
        bench_raw_sqlite(os.path.join(tmp, "raw.sqlite3"), results)
        bench_cachetools(results)
        rounds = asyncio.run(head_to_head(tmp))
        get_ratios = asyncio.run(paired_get_ratios(tmp))
    print(render_table(f"Store operations, {N_KEYS:,} keys of ~{len(VALUE)}-byte JSON", results))
    checks = [
        (
            "sqlite get (hit) / diskcache get (hit), medians",
            ratio(results, "kvcache sqlite: get (hit)", "diskcache: get (hit)"),
            1.0,
        ),
        *head_to_head_checks(rounds, get_ratios),
    ]
    print("| target | measured | limit | met |\n|---|---|---|---|")
    for label, value, limit in checks:
        print(f"| {label} | {value:.2f}× | ≤ {limit}× | {'yes' if value <= limit else 'NO'} |")
    memory_get = {r.name: r.median for r in results}["kvcache memory: get (hit)"]
    met = "yes" if memory_get <= 2.0 else "NO"
    print(f"| memory get (hit) | {memory_get:.2f} µs | ≤ 2 µs | {met} |")


if __name__ == "__main__":
    main()
