"""The cache over a Redis that dies or freezes, under 50 concurrent get_or_set callers.

Reproduce (starts its own redis-server on a free 127.0.0.1 port; writes Markdown):

    pip install -e '.[bench]'      # plus Debian's redis-server
    python bench/bench_breaker.py

Scenarios, each run with kvcache's defaults and, side by side, with the settings the
issue measured (a fixed 30 s cool-down and 5 s command timeouts, on today's breaker):

- kill: callers run for WARM s, redis-server gets SIGKILL, is started again DOWN s
  later on the same port; we time from the moment it accepts connections to the
  first successful store call of the cache, and count the store calls made while the
  breaker was open per cool-down.
- freeze: callers run for WARM s, redis-server gets SIGSTOP for FROZEN s, then
  SIGCONT; we time every get_or_set call that ran while it was frozen.

The callers: 50 tasks, each calling `get_or_set` on 200 keys in turn with a 2 ms
origin fetch and a 20 ms pause between calls (about 2,500 calls a second in all).
Store calls are seen through a wrapper of the store's connection (every command
goes through it), noted with the breaker's state when they start.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _paired import Stats, summarise, table
from _redis import RedisProcess, redis_server
from kvcache.cache import Cache, CircuitBreaker
from kvcache.kv._redis_client import open_link
from kvcache.kv._redis_link import Arg, Link
from kvcache.kv.redis import RedisStore

CALLERS = 50
KEYS = 200
WARM, DOWN, FROZEN, AFTER = 3.0, 7.0, 5.0, 3.0
#: (label, first and longest cool-down (None: the defaults), URL query)
CONFIGS: list[tuple[str, tuple[float, float] | None, str]] = [
    ("defaults (0.25 s doubling to 1 s; reads 0.25 s, writes 0.4 s)", None, ""),
    (
        "issue's settings (fixed 30 s; 5 s timeouts)",
        (30.0, 30.0),
        "?socket_timeout=5&write_timeout=5",
    ),
]


@dataclass
class Seen:
    """Store commands, noted as they start: (time, breaker state, probes so far)."""

    breaker: CircuitBreaker
    calls: list[tuple[float, str, int]] = field(default_factory=list)
    ok: list[float] = field(default_factory=list)


class SeenLink(Link):
    """A Link that notes every command before handing it on."""

    def __init__(self, inner: Link, seen: Seen) -> None:
        self.inner, self.seen = inner, seen

    async def _note(self, call: Any) -> Any:
        breaker = self.seen.breaker
        self.seen.calls.append((time.monotonic(), breaker.state, breaker.probes))
        result = await call
        self.seen.ok.append(time.monotonic())
        return result

    async def get(self, name: bytes, timeout: float | None) -> bytes | None:
        result: bytes | None = await self._note(self.inner.get(name, timeout))
        return result

    async def mget(
        self, prefix: bytes, keys: Sequence[str], timeout: float | None
    ) -> list[bytes | None]:
        result: list[bytes | None] = await self._note(self.inner.mget(prefix, keys, timeout))
        return result

    async def evalsha(
        self, sha: str, keys: tuple[bytes, bytes], args: Sequence[Arg], timeout: float | None
    ) -> Any:
        return await self._note(self.inner.evalsha(sha, keys, args, timeout))

    async def script_load(self, source: str, timeout: float | None) -> None:
        await self.inner.script_load(source, timeout)

    async def ping(self, timeout: float | None) -> None:
        await self.inner.ping(timeout)

    async def aclose(self) -> None:
        await self.inner.aclose()


@dataclass
class Run:
    durations: list[tuple[float, float]] = field(default_factory=list)  # (start, seconds)
    exceptions: int = 0


async def callers(cache: Cache, run: Run, stop: asyncio.Event) -> None:
    async def one(index: int) -> None:
        i = index
        while not stop.is_set():
            key = f"customer:{i % KEYS}"

            async def fetch(key: str = key) -> str:
                await asyncio.sleep(0.002)
                return f"value of {key}"

            start = time.monotonic()
            try:
                await cache.get_or_set(key, fetch, ttl=60)
            except Exception:
                run.exceptions += 1
            run.durations.append((start, time.monotonic() - start))
            i += CALLERS
            await asyncio.sleep(0.02)

    await asyncio.gather(*(one(i) for i in range(CALLERS)))


async def open_cache(
    server: RedisProcess, options: tuple[float, float] | None, query: str
) -> tuple[Cache, Seen, RedisStore]:
    breaker = (
        CircuitBreaker()
        if options is None
        else CircuitBreaker(cooldown=options[0], max_cooldown=options[1])
    )
    seen = Seen(breaker)
    link, settings = await open_link(server.url + query, cluster=None, options={})
    watched = SeenLink(link, seen)
    namespace = f"bench-{time.monotonic_ns()}"
    store = RedisStore(
        watched, url=server.url, namespace=namespace, owns_client=True, settings=settings
    )
    return Cache(store, breaker=breaker), seen, store


def while_open(seen: Seen, since: float, until: float) -> tuple[int, int]:
    """Store calls started while the breaker was open, and the most in one cool-down."""
    per_cooldown: dict[int, int] = {}
    for at, state, probes in seen.calls:
        if since <= at < until and state != "closed":
            per_cooldown[probes] = per_cooldown.get(probes, 0) + 1
    return sum(per_cooldown.values()), max(per_cooldown.values(), default=0)


async def kill(
    server: RedisProcess, label: str, options: tuple[float, float] | None, query: str
) -> str:
    cache, seen, store = await open_cache(server, options, query)
    run, stop = Run(), asyncio.Event()
    task = asyncio.ensure_future(callers(cache, run, stop))
    await asyncio.sleep(WARM)
    killed = time.monotonic()
    server.kill()
    await asyncio.sleep(DOWN)
    await asyncio.get_running_loop().run_in_executor(None, server.start)
    back = time.monotonic()
    give_up = back + 45.0
    while not [t for t in seen.ok if t >= back] and time.monotonic() < give_up:
        await asyncio.sleep(0.001)
    used = [t for t in seen.ok if t >= back]
    await asyncio.sleep(AFTER)
    stop.set()
    await task
    await store.close()
    calls, most = while_open(seen, killed, back)
    again = f"{used[0] - back:.3f} s" if used else "not within 45 s"
    outage = [d for start, d in run.durations if killed <= start < back]
    worst = max(outage, default=0.0)
    return f"| {label} | {run.exceptions} | {again} | {calls} | {most} | {worst * 1000:.1f} ms |"


async def freeze(
    server: RedisProcess, label: str, options: tuple[float, float] | None, query: str
) -> tuple[str, Stats]:
    cache, seen, store = await open_cache(server, options, query)
    run, stop = Run(), asyncio.Event()
    task = asyncio.ensure_future(callers(cache, run, stop))
    await asyncio.sleep(WARM)
    frozen = time.monotonic()
    server.freeze()
    await asyncio.sleep(FROZEN)
    server.thaw()
    thawed = time.monotonic()
    await asyncio.sleep(AFTER)
    stop.set()
    await task
    await store.close()
    during = [d * 1000 for start, d in run.durations if frozen <= start < thawed]
    stats = summarise(label, during)
    over = sum(d > 500 for d in during)
    calls, most = while_open(seen, frozen, thawed)
    row = f"| {label} | {run.exceptions} | {len(during)} | {over} | {calls} | {most} |"
    return row, stats


async def main_async() -> None:
    logging.getLogger("kvcache.cache").setLevel(logging.ERROR)  # the tables say it all
    kills: list[str] = []
    freezes: list[str] = []
    waits: list[Stats] = []
    for label, options, query in CONFIGS:
        with redis_server() as server:
            kills.append(await kill(server, label, options, query))
        with redis_server() as server:
            row, stats = await freeze(server, label, options, query)
            freezes.append(row)
            waits.append(stats)
    print(f"### Redis killed for {DOWN:g} s under {CALLERS} get_or_set callers\n")
    print(
        "| settings | exceptions | store used again after it answers | "
        "store calls while open | most in one cool-down | slowest call while down |"
    )
    print("|---|---|---|---|---|---|")
    print("\n".join(kills) + "\n")
    print(f"### Redis frozen (SIGSTOP) for {FROZEN:g} s under {CALLERS} get_or_set callers\n")
    print(
        "| settings | exceptions | calls while frozen | calls over 0.5 s | "
        "store calls while open | most in one cool-down |"
    )
    print("|---|---|---|---|---|---|")
    print("\n".join(freezes) + "\n")
    print(table("get_or_set while Redis was frozen", waits, unit="ms"))


if __name__ == "__main__":
    asyncio.run(main_async())
