"""Redis store micro-benchmark: kvcache's RedisStore beside raw redis-py, one redis-server.

Reproduce (starts its own redis-server on a free 127.0.0.1 port, no persistence, and
writes the Markdown tables to stdout):

    pip install -e '.[bench]'      # plus Debian's redis-server
    python bench/bench_redis.py

Setup: bench_store.py's 10,000 keys of ~200-byte JSON in one namespace, and the same value under a
plain key for the raw client. Both sides use redis-py's asyncio client with the same
settings (and hiredis when it is installed: the table says which parser ran); every
figure is an awaited call on one running loop, µs per operation. Raw and store runs
alternate in ROUNDS rounds; a ratio is the median over rounds of store / raw medians,
so a load spike on the machine hits both sides of a round alike.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any

import redis.asyncio as aioredis
from redis.utils import HIREDIS_AVAILABLE

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import kvcache
from _timing import Result, measure_async, render_table
from bench_store import KEYS, N_KEYS, TTL, VALUE  # the same data as the store benchmark

ROUNDS = 7
RAW_KEYS = [f"raw:{key}".encode() for key in KEYS]
#: (label, store operation, raw operation, limit on store / raw; None: context only)
TARGETS: list[tuple[str, str, str, float | None]] = [
    ("store get / raw GET", "store: get", "raw: GET", 1.15),
    ("store get_many 100 / raw MGET 100", "store: get_many 100", "raw: MGET 100", 1.1),
    ("store put (ttl) / raw SET EX", "store: put (expiration_ttl)", "raw: SET EX", 1.15),
    ("(context) raw MGET 100 / raw GET", "raw: MGET 100", "raw: GET", None),
]


@contextmanager
def redis_server() -> Iterator[int]:
    """A throwaway redis-server; yields its port."""
    binary = shutil.which("redis-server")
    if binary is None:
        sys.exit("redis-server not found: apt-get install redis-server")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with tempfile.TemporaryDirectory() as tmp:
        args = ["--port", str(port), "--bind", "127.0.0.1", "--dir", tmp, "--save", ""]
        proc = subprocess.Popen([binary, *args, "--appendonly", "no"], stdout=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 10
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        sys.exit("redis-server did not start")
                    time.sleep(0.02)
            yield port
        finally:
            proc.terminate()
            proc.wait()


def operations(kv: Any, raw: aioredis.Redis) -> dict[str, Callable[[int], Awaitable[Any]]]:
    n = N_KEYS
    value = VALUE.encode()

    async def store_get(i: int) -> Any:
        return await kv.get(KEYS[i % n])

    async def store_get_many(i: int) -> Any:
        start = (i * 100) % (n - 100)
        return await kv.get_many(KEYS[start : start + 100])

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

    return {
        "raw: GET": raw_get,
        "store: get": store_get,
        "store: get_many 100": store_get_many,
        "raw: MGET 100": raw_mget,
        "raw: SET EX": raw_set,
        "store: put (expiration_ttl)": store_put,
        "store: list 100 of 10,000": store_list,
    }


async def run(port: int) -> tuple[list[Result], dict[str, list[float]]]:
    url = f"redis://127.0.0.1:{port}/0"
    kv = await kvcache.open_kv(url, namespace="bench")
    raw = aioredis.Redis.from_url(url)
    await kv.put_many([{"key": key, "value": VALUE} for key in KEYS])
    await raw.mset({key: VALUE.encode() for key in RAW_KEYS})
    ops = operations(kv, raw)
    rounds: dict[str, list[Result]] = {name: [] for name in ops}
    for _ in range(ROUNDS):
        for name, op in ops.items():
            inner = 10 if "100" in name else 50
            rounds[name].append(await measure_async(name, op, inner=inner, samples=60))
    await kv.close()
    await raw.aclose()
    ratios = {
        label: [s.median / r.median for s, r in zip(rounds[store], rounds[base], strict=True)]
        for label, store, base, _ in TARGETS
    }
    best = [min(results, key=lambda result: result.median) for results in rounds.values()]
    return best, ratios


def main() -> None:
    with redis_server() as port:
        results, ratios = asyncio.run(run(port))
    parser = "hiredis" if HIREDIS_AVAILABLE else "redis-py's Python parser"
    title = f"Redis store vs raw redis-py, {N_KEYS:,} keys of ~{len(VALUE)}-byte JSON ({parser})"
    print(render_table(title + ", best round", results))
    print("| target | measured (median of rounds) | limit | met |\n|---|---|---|---|")
    for label, _, _, limit in TARGETS:
        value = statistics.median(ratios[label])
        if limit is None:
            print(f"| {label} | {value:.2f}× | | |")
        else:
            met = "yes" if value <= limit else "NO"
            print(f"| {label} | {value:.2f}× | ≤ {limit}× | {met} |")


if __name__ == "__main__":
    main()
