"""Customer look-ups by e-mail: origin calls under concurrency, and the hit latency.

Reproduce (starts the emulator, `kvcache serve` and the peer itself; Markdown to stdout):

    pip install -e '.[service]'
    python bench/bench_origins.py              # --lookups 1000 --emails 100 --callers 50

1. Origin calls: `--lookups` look-ups of `--emails` e-mails (a seeded random draw) by
   `--callers` concurrent callers, against the Shopify emulator answering each query
   in 100 ms (`--latency`), through `CustomerRepository.find_by_email` on the embedded
   SQLite store. Peer: the seed's cache-aside (get; on a miss fetch, then set) on the
   same cache and emulator, which has no single-flight.
2. Hit latency through the library: `find_by_email` on a warm entry, beside the
   cache's own `get` of the same key (the floor under it).
3. Hit latency through HTTP: `GET /api/customers` on `kvcache serve` (1 worker, the same
   store), beside bench/_bare_json.py (a Starlette endpoint answering a constant JSON
   object) on the same uvicorn settings, one keep-alive httpx client at a time and then
   `--callers` at once. Latency is per request, as the client sees it.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

import kvcache
from kvcache import Cache
from kvcache.shopify import keys
from kvcache.shopify.admin import AdminClient
from kvcache.shopify.customers import CustomerRepository
from kvcache.testing import ShopifyAdminEmulator

HERE = Path(__file__).resolve().parent
SHOP = "demo.myshopify.com"
SECRET = "bench-secret"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def summary(name: str, seconds: list[float], unit: float = 1e3) -> str:
    """A Markdown row: mean, median, p99, max (in ms by default)."""
    ordered = sorted(seconds)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    cells = [statistics.fmean(ordered), statistics.median(ordered), p99, ordered[-1]]
    return f"| {name} | {len(ordered)} | " + " | ".join(f"{c * unit:.3f}" for c in cells) + " |"


def header(unit: str) -> str:
    return (
        f"| what | n | mean {unit} | median {unit} | p99 {unit} | max {unit} |\n"
        "|---|---|---|---|---|---|"
    )


def emails(count: int) -> list[str]:
    return [f"c{i}@example.com" for i in range(count)]


async def storm(
    find: Callable[[str], Awaitable[Any]], draw: list[str], callers: int
) -> tuple[list[float], float]:
    """Every look-up's latency, and the wall time, with `callers` callers sharing `draw`."""
    queue = list(reversed(draw))
    latencies: list[float] = []

    async def caller() -> None:
        while queue:
            email = queue.pop()
            start = time.perf_counter()
            await find(email)
            latencies.append(time.perf_counter() - start)

    start = time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(callers)))
    return latencies, time.perf_counter() - start


async def origin_calls(args: argparse.Namespace, directory: Path) -> list[str]:
    rows = [header("ms")]
    notes = []
    rng = random.Random(7)
    draw = [rng.choice(emails(args.emails)) for _ in range(args.lookups)]
    for name in ("CustomerRepository.find_by_email", "seed cache-aside (get, fetch, set)"):
        with ShopifyAdminEmulator(latency=args.latency) as emulator:
            for email in emails(args.emails):
                emulator.add_customer(email)
            url = f"sqlite:///{directory}/{'repo' if 'Repo' in name else 'aside'}.db"
            async with kvcache.open_kv(url, namespace="CACHE") as kv:
                cache = Cache(kv, family=keys.family)
                admin = AdminClient(SHOP, "shpat_emulator", admin_url=emulator.admin_url())
                repo = CustomerRepository(admin, cache)
                find: Callable[[str], Awaitable[Any]] = repo.find_by_email
                if "aside" in name:
                    find = _cache_aside(repo, cache)
                latencies, wall = await storm(find, draw, args.callers)
                await admin.aclose()
            calls = emulator.stats()["served"]
        rows.append(summary(name, latencies))
        notes.append(f"- {name}: **{calls} origin calls** for {len(set(draw))} distinct e-mails, "
                     f"{args.lookups} look-ups in {wall:.2f} s")  # fmt: skip
    return [*rows, "", *notes]


def _cache_aside(repo: CustomerRepository, cache: Cache) -> Callable[[str], Awaitable[Any]]:
    """The seed's findByEmail: a read, then on a miss Shopify and a write; no single-flight."""
    missing = object()

    async def find(email: str) -> Any:
        key = keys.customer_email_key(SHOP, email)
        value = await cache.get(key, missing)
        if value is missing:
            value = await repo._fetch(keys.normalize_email(email))
            await cache.set(key, value, ttl=1800 if value is not None else 60)
        return value

    return find


async def library_hits(args: argparse.Namespace, directory: Path) -> list[str]:
    rows = [header("µs")]
    with ShopifyAdminEmulator() as emulator:
        emulator.add_customer("c0@example.com")
        async with kvcache.open_kv(f"sqlite:///{directory}/hits.db", namespace="CACHE") as kv:
            cache = Cache(kv, family=keys.family)
            token = emulator.token or ""
            async with AdminClient(SHOP, token, admin_url=emulator.admin_url()) as admin:
                repo = CustomerRepository(admin, cache)
                email = "c0@example.com"
                await repo.find_by_email(email)
                key = keys.customer_email_key(SHOP, email)
                ops: list[tuple[str, Callable[[], Awaitable[Any]]]] = [
                    ("Cache.get (the floor)", lambda: cache.get(key)),
                    ("CustomerRepository.find_by_email", lambda: repo.find_by_email(email)),
                ]
                for name, op in ops:
                    samples = []
                    for _ in range(args.samples):
                        start = time.perf_counter()
                        await op()
                        samples.append(time.perf_counter() - start)
                    rows.append(summary(name, samples, unit=1e6))
    return rows


@contextmanager
def serving(target: str, directory: Path, env: dict[str, str]) -> Iterator[str]:
    port = free_port()
    common = ["--port", str(port), "--workers", "1", "--log-level", "warning"]
    if target == "kvcache":
        command = [sys.executable, "-m", "kvcache", "serve", *common]
    else:
        command = [sys.executable, "-m", "uvicorn", "_bare_json:app", "--host", "127.0.0.1",
                   "--no-access-log", "--app-dir", str(HERE), *common]  # fmt: skip
    process = subprocess.Popen(
        command, cwd=directory, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(url + "/api/customers", timeout=1)
                break
            except httpx.HTTPError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"{target} did not start") from None
                time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


async def http_hits(url: str, requests: int, callers: int) -> list[float]:
    params = {"shop": SHOP, "email": "c0@example.com"}
    latencies: list[float] = []
    limits = httpx.Limits(max_connections=callers, max_keepalive_connections=callers)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30) as client:
        for _ in range(20):
            (await client.get("/api/customers", params=params)).raise_for_status()
        left = requests

        async def caller() -> None:
            nonlocal left
            while left > 0:
                left -= 1
                start = time.perf_counter()
                answer = await client.get("/api/customers", params=params)
                latencies.append(time.perf_counter() - start)
                assert answer.status_code == 200 and answer.headers["x-cache"] == "HIT"

        await asyncio.gather(*(caller() for _ in range(callers)))
    return latencies


def api_hits(args: argparse.Namespace, directory: Path) -> list[str]:
    rows = [header("ms")]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KVCACHE_", "PROMETHEUS_"))}
    env |= {"SHOPIFY_API_SECRET": SECRET, "BENCH_TOKEN": "shpat_emulator"}
    with ShopifyAdminEmulator() as emulator:
        emulator.add_customer("c0@example.com")
        subprocess.run(
            [sys.executable, "-m", "kvcache", "shop", "add", SHOP, "--token-env", "BENCH_TOKEN",
             "--admin-url", emulator.admin_url()],
            cwd=directory, env=env, check=True, capture_output=True,
        )  # fmt: skip
        for callers in (1, args.callers):
            for target, name in (("bare", "bare Starlette, constant JSON"),
                                 ("kvcache", "GET /api/customers (a hit)")):  # fmt: skip
                with serving(target, directory, env) as url:
                    latencies = asyncio.run(http_hits(url, args.requests, callers))
                rows.append(summary(f"{name}, {callers} at once", latencies))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lookups", type=int, default=1000)
    parser.add_argument("--emails", type=int, default=100)
    parser.add_argument("--callers", type=int, default=50)
    parser.add_argument("--latency", type=float, default=0.1)
    parser.add_argument("--samples", type=int, default=5000, help="library hit samples")
    parser.add_argument("--requests", type=int, default=2000, help="HTTP requests per row")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="kvcache-bench-origins-") as tmp:
        directory = Path(tmp)
        shopify = f"Shopify at {args.latency * 1000:.0f} ms a query"
        print(f"### Origin calls: {args.lookups} look-ups of {args.emails} e-mails, "
              f"{args.callers} callers, {shopify}\n")  # fmt: skip
        print("\n".join(asyncio.run(origin_calls(args, directory))))
        print("\n### Hit latency through the library (SQLite store)\n")
        print("\n".join(asyncio.run(library_hits(args, directory))))
        print("\n### Hit latency through HTTP (1 uvicorn worker each)\n")
        print("\n".join(api_hits(args, directory)))
    print(f"\n{os.cpu_count()} CPUs, Python {sys.version.split()[0]}, load average "
          f"{os.getloadavg()[0]:.1f} at the end")  # fmt: skip


if __name__ == "__main__":
    main()
