"""Redis store micro-benchmark: kvcache's RedisStore beside raw redis-py, one redis-server.

Reproduce (starts its own redis-server on a free 127.0.0.1 port, no persistence, and
writes the Markdown tables to stdout):

    pip install -e '.[bench]'      # plus Debian's redis-server
    python bench/bench_redis.py

Setup: bench_store.py's 10,000 keys of ~200-byte JSON in one namespace (and again, with
a TTL, in a second one), and the same value under a plain key for the raw client, which
is redis-py's asyncio client with its defaults (and hiredis when installed: the title
says which parser ran). Every figure is an awaited call on one running loop, µs per
call. Each ratio pairs the store with its raw peer in alternating batches
(`_paired.paired`): ROUNDS rounds of SAMPLES batch pairs; a round's ratio is the
median store batch over the median raw batch; the figure is the median over rounds.
The last table splits the put: the server's own time per call (INFO commandstats),
EVALSHA of the put script beside SET.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
from typing import Any

import redis.asyncio as aioredis
from redis.utils import HIREDIS_AVAILABLE

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import kvcache
from _paired import Op, Stats, paired, summarise, table
from _redis import redis_server
from bench_store import KEYS, N_KEYS, TTL, VALUE  # the same data as the store benchmark
from kvcache.kv._redis_link import NodeLink, pack

ROUNDS = 9
SAMPLES = 30
RAW_KEYS = [f"raw:{key}".encode() for key in KEYS]
#: (label, store operation, raw operation, limit on store / raw; None: context only)
TARGETS: list[tuple[str, str, str, float | None]] = [
    ("store get / raw GET", "store: get", "raw: GET", 1.15),
    ("store get_many 100 / raw MGET 100", "store: get_many 100", "raw: MGET 100", 1.1),
    ("store put (ttl) / raw SET EX", "store: put (expiration_ttl)", "raw: SET EX", 1.15),
    (
        "(context) get_many 100 of entries with a TTL / raw MGET 100",
        "store: get_many 100 (TTL entries)",
        "raw: MGET 100",
        None,
    ),
    (
        "(context) store put / SET EX on the store's own connections",
        "store: put (expiration_ttl)",
        "link: SET EX",
        None,
    ),
    ("(context) store list 100 / raw MGET 100", "store: list 100 of 10,000", "raw: MGET 100", None),
]


def operations(kv: Any, ttl_kv: Any, raw: aioredis.Redis) -> dict[str, Op]:
    n = N_KEYS
    value = VALUE.encode()
    link = kv._link
    assert isinstance(link, NodeLink)

    async def store_get(i: int) -> Any:
        return await kv.get(KEYS[i % n])

    async def store_get_many(i: int) -> Any:
        start = (i * 100) % (n - 100)
        return await kv.get_many(KEYS[start : start + 100])

    async def store_get_many_ttl(i: int) -> Any:
        start = (i * 100) % (n - 100)
        return await ttl_kv.get_many(KEYS[start : start + 100])

    async def store_put(i: int) -> Any:
        return await kv.put(KEYS[i % n], VALUE, expiration_ttl=TTL)

    async def store_list(i: int) -> Any:
        return await kv.list(prefix="customer:", limit=100)

    async def raw_get(i: int) -> Any:
        return await raw.get(RAW_KEYS[i % n])

    async def raw_mget(i: int) -> Any:
        start = (i * 100) % (n - 100)
        return await raw.mget(RAW_KEYS[start : start + 100])

    async def raw_set(i: int) -> Any:
        return await raw.set(RAW_KEYS[i % n], value, ex=TTL)

    async def link_set(i: int) -> Any:
        return await link._send(pack(["SET", RAW_KEYS[i % n], value, "EX", TTL]), 1.0)

    return {
        "raw: GET": raw_get,
        "store: get": store_get,
        "raw: MGET 100": raw_mget,
        "store: get_many 100": store_get_many,
        "store: get_many 100 (TTL entries)": store_get_many_ttl,
        "raw: SET EX": raw_set,
        "link: SET EX": link_set,
        "store: put (expiration_ttl)": store_put,
        "store: list 100 of 10,000": store_list,
    }


async def server_times(raw: aioredis.Redis, kv: Any, ops: dict[str, Op]) -> list[Stats]:
    """µs the server spends per call: the put script's EVALSHA beside a plain SET."""
    await raw.config_resetstat()
    for i in range(2000):
        await ops["store: put (expiration_ttl)"](i)
        await ops["raw: SET EX"](i)
    stats: dict[str, Any] = await raw.info("commandstats")
    # The script's own SET runs inside EVALSHA and is counted under "set" as well.
    per_call = {name: float(value["usec_per_call"]) for name, value in stats.items()}
    return [
        summarise("server: EVALSHA (store put)", [per_call["cmdstat_evalsha"]]),
        summarise("server: SET (raw SET EX and the script's SET)", [per_call["cmdstat_set"]]),
    ]


async def run(url: str) -> tuple[list[Stats], dict[str, list[float]], list[Stats]]:
    kv = await kvcache.open_kv(url, namespace="bench")
    ttl_kv = await kvcache.open_kv(url, namespace="bench-ttl")
    raw = aioredis.Redis.from_url(url)
    await kv.put_many([{"key": key, "value": VALUE} for key in KEYS])
    await ttl_kv.put_many([{"key": key, "value": VALUE, "expiration_ttl": TTL} for key in KEYS])
    await raw.mset({key: VALUE.encode() for key in RAW_KEYS})
    ops = operations(kv, ttl_kv, raw)
    samples: dict[str, list[float]] = {name: [] for name in ops}
    ratios: dict[str, list[float]] = {}
    for label, store, base, _ in TARGETS:
        inner = 10 if "100" in store else 40
        a, b, per_round = await paired(
            ops[store], ops[base], rounds=ROUNDS, samples=SAMPLES, inner=inner
        )
        samples[store] += a
        samples[base] += b
        ratios[label] = per_round
    server = await server_times(raw, kv, ops)
    await kv.close()
    await ttl_kv.close()
    await raw.aclose()
    rows = [summarise(name, times) for name, times in samples.items() if times]
    return rows, ratios, server


def main() -> None:
    with redis_server() as server:
        rows, ratios, times = asyncio.run(run(server.url))
    parser = "hiredis" if HIREDIS_AVAILABLE else "redis-py's Python parser"
    title = f"Redis store vs raw redis-py, {N_KEYS:,} keys of ~{len(VALUE)}-byte JSON ({parser})"
    print(table(title + ", all batches", rows))
    print("| target | measured (median of rounds) | rounds min–max | limit | met |")
    print("|---|---|---|---|---|")
    for label, _, _, limit in TARGETS:
        value = statistics.median(ratios[label])
        spread = f"{min(ratios[label]):.2f}–{max(ratios[label]):.2f}"
        if limit is None:
            print(f"| {label} | {value:.2f}× | {spread} | | |")
        else:
            met = "yes" if value <= limit else "NO"
            print(f"| {label} | {value:.2f}× | {spread} | ≤ {limit}× | {met} |")
    print()
    print(table("Server time per call (INFO commandstats)", times))


if __name__ == "__main__":
    main()
