"""What the billing meter costs a store operation: sqlite get and put with and without it.

Reproduce (writes the Markdown tables to stdout):

    pip install -e '.[bench]'
    python bench/bench_meter.py

Two stores on one SQLite file, one namespace each, both holding the same 10,000
shop-scoped keys with ~200-byte JSON values; one store has a `Meter` (with the
service's family function, `kvcache.shopify.keys.family`), the other none. Each
pair of operations is timed in alternating batches (`_paired.paired`: A B B A ...)
so a change of load on a shared machine hits both alike; a round's ratio is the
median of the metered batches over the median of the plain ones, and the figure
is the median over ROUNDS rounds. Means are shown beside the medians (the put
means include WAL checkpoints). The meter is drained between rounds, as the
service does every few seconds. Target: the metered store at most 5% slower.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import kvcache
from _paired import Op, Stats, paired, summarise, table
from kvcache.kv.meter import Meter
from kvcache.shopify.keys import family

N_KEYS = 10_000
SHOP = "bench-shop.myshopify.com"
KEYS = [f"shop:{SHOP}:customer:email:{i:05d}@example.com" for i in range(N_KEYS)]
VALUE = json.dumps({"id": "gid://shopify/Customer/1", "email": "a@example.com", "x": "y" * 150})
TTL = 3600
ROUNDS = 7
LIMIT = 1.05


async def compare(
    name: str, metered: Op, plain: Op, meter: Meter, samples: int, inner: int
) -> tuple[list[Stats], float, list[float]]:
    """One row pair and the ratio of medians (median over rounds)."""
    ratios: list[float] = []
    with_meter: list[float] = []
    without: list[float] = []
    for _ in range(ROUNDS):
        a, b, r = await paired(metered, plain, rounds=1, samples=samples, inner=inner)
        with_meter += a
        without += b
        ratios += r
        meter.drain()
    rows = [summarise(f"{name}, with meter", with_meter), summarise(f"{name}, no meter", without)]
    return rows, statistics.median(ratios), ratios


async def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/kv.sqlite3"
        meter = Meter(family)
        kv_metered = await kvcache.open_kv(url, namespace="metered", meter=meter)
        kv_plain = await kvcache.open_kv(url, namespace="plain")
        for kv in (kv_metered, kv_plain):
            await kv.put_many([{"key": k, "value": VALUE, "expiration_ttl": TTL} for k in KEYS])

        def getter(kv: kvcache.KVStore) -> Op:
            return lambda i: kv.get(KEYS[i % N_KEYS])

        def putter(kv: kvcache.KVStore) -> Op:
            return lambda i: kv.put(KEYS[i * 7919 % N_KEYS], VALUE, expiration_ttl=TTL)

        get_rows, get_ratio, get_rounds = await compare(
            "sqlite get (hit)", getter(kv_metered), getter(kv_plain), meter, 40, 200
        )
        put_rows, put_ratio, put_rounds = await compare(
            "sqlite put (ttl)", putter(kv_metered), putter(kv_plain), meter, 20, 50
        )
        await kv_metered.close()
        await kv_plain.close()
    print(table("SQLite store operations with and without the meter", get_rows + put_rows))
    print("| target | measured (median of rounds) | rounds | limit | met |")
    print("|---|---|---|---|---|")
    for label, value, rounds in (
        ("sqlite get (hit), metered / not", get_ratio, get_rounds),
        ("sqlite put (ttl), metered / not", put_ratio, put_rounds),
    ):
        shown = ", ".join(f"{r:.3f}" for r in rounds)
        met = "yes" if value <= LIMIT else "NO"
        print(f"| {label} | {value:.3f}× | {shown} | ≤ {LIMIT}× | {met} |")


if __name__ == "__main__":
    asyncio.run(main())
