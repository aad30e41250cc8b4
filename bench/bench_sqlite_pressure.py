"""SQLite under write pressure: does a process's event loop keep running while others write?

Reproduce (prints Markdown tables, then a target-vs-measured summary):

    pip install -e '.[bench]'
    mkdir -p /tmp/v1 && git archive 59f9e24 src | tar -x -C /tmp/v1    # today's code
    python bench/bench_sqlite_pressure.py --baseline-src /tmp/v1/src

Every scenario runs real processes (spawn) on a fresh file of 10,000 keys with ~200-byte
values, once for this checkout's kvcache and once for the code under --baseline-src:

1. lock holder: a raw sqlite3 process holds BEGIN IMMEDIATE for 2 s while the measured
   process runs a 1 ms asyncio heartbeat beside a kv.put every 10 ms.
2. 4 writers: four processes put at full speed while a fifth does one get and one put
   every 10 ms beside its heartbeat.
3. 4 x 2,000 puts: four processes each put 2,000 keys at once (aggregate puts/s), beside
   diskcache (4 x 2,000 set) and raw sqlite3 on the same schema; median of --rounds.

Heartbeat gap: the time between wake-ups of `await asyncio.sleep(0.001)` (1 ms is the
floor). The "floor" column of scenario 2 is a fifth process that only beats beside the
same writers: what the CPU scheduler alone costs on this machine at that moment. Loop
busy: the share of wall time the loop spent outside its selector, that is running
callbacks, including any wait inside sqlite3.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import random
import selectors
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass
from multiprocessing.synchronize import Barrier, Event
from types import ModuleType
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bench_store import KEYS, RAW_PUT, TTL, VALUE, raw_sqlite

LOCK_SECONDS = 2.0
MIXED_SECONDS = 3.0
BURST_PUTS = 2_000
PROCESSES = 4
CTX = multiprocessing.get_context("spawn")
Put = Callable[[str], Awaitable[None]]


def _kvcache(src: str | None) -> ModuleType:
    """kvcache from `src` (another checkout's src/ directory), else the installed one."""
    if src:
        for name in [n for n in sys.modules if n == "kvcache" or n.startswith("kvcache.")]:
            del sys.modules[name]  # bench_store imported the installed one
        sys.path.insert(0, src)
    import kvcache

    if src and not kvcache.__file__.startswith(src):
        raise RuntimeError(f"kvcache came from {kvcache.__file__}, not {src}")
    return kvcache


class _TimedSelector(selectors.DefaultSelector):
    """A selector that adds up the time the loop spent waiting in it."""

    def __init__(self) -> None:
        super().__init__()
        self.idle = 0.0

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        start = time.monotonic()
        try:
            return super().select(timeout)
        finally:
            self.idle += time.monotonic() - start


def _run(main: Callable[[_TimedSelector], Coroutine[Any, Any, None]]) -> None:
    selector = _TimedSelector()
    loop = asyncio.SelectorEventLoop(selector)
    try:
        loop.run_until_complete(main(selector))
    finally:
        loop.close()


async def _heartbeat(stop: asyncio.Event, beats: list[float]) -> None:
    """Record the time of every wake-up of a 1 ms sleep until `stop` is set."""
    beats.append(time.monotonic())
    while not stop.is_set():
        await asyncio.sleep(0.001)
        beats.append(time.monotonic())


@asynccontextmanager
async def _putter(kind: str, src: str | None, path: str) -> AsyncIterator[Put]:
    """`put(key)` on a store of `kind`: kvcache (from `src`), diskcache or raw sqlite3."""
    if kind == "kvcache":
        async with _kvcache(src).open_kv(f"sqlite:///{path}", namespace="bench") as kv:
            yield lambda key: kv.put(key, VALUE, expiration_ttl=TTL)
    elif kind == "diskcache":
        import diskcache

        with diskcache.Cache(path) as cache:

            async def cache_set(key: str) -> None:
                cache.set(key, VALUE, expire=TTL)

            yield cache_set
    else:
        conn = sqlite3.connect(path, isolation_level=None, timeout=30)
        conn.execute("PRAGMA synchronous = NORMAL")

        async def raw_put(key: str) -> None:
            conn.execute(RAW_PUT, ("bench", key, VALUE.encode(), int(time.time()) + TTL, None))

        try:
            yield raw_put
        finally:
            conn.close()


def _populate(kind: str, src: str | None, path: str) -> None:
    """Child: fill a fresh store of `kind` with the 10,000 keys."""
    if kind == "raw sqlite3":
        raw_sqlite(path).close()
        return

    async def fill(_: _TimedSelector) -> None:
        async with _putter(kind, src, path) as put:
            for key in KEYS:
                await put(key)

    _run(fill)


def _holder(path: str, start: Barrier, out: Any) -> None:
    """Child: hold the write lock for LOCK_SECONDS, shortly after the measured process runs."""
    conn = sqlite3.connect(path, isolation_level=None, timeout=30)
    start.wait(60)
    time.sleep(0.3)
    conn.execute("BEGIN IMMEDIATE")
    locked = time.monotonic()
    time.sleep(LOCK_SECONDS)
    released = time.monotonic()
    conn.execute("COMMIT")
    conn.close()
    out.put((locked, released))


def _paced(
    src: str | None, path: str, start: Barrier, seconds: float, calls: str, out: Any
) -> None:
    """Child: the measured process. Every 10 ms a put, a get and a put, or nothing
    (`calls`: "put", "get+put", "none"), beside the heartbeat, for `seconds`; reports
    the beats, the loop's busy share and the time of each round of calls."""

    async def main(selector: _TimedSelector) -> None:
        kvcache = _kvcache(src)
        async with kvcache.open_kv(f"sqlite:///{path}", namespace="bench") as kv:
            rng = random.Random(os.getpid())
            start.wait(60)
            stop, beats = asyncio.Event(), list[float]()
            beat = asyncio.create_task(_heartbeat(stop, beats))
            began, idle = time.monotonic(), selector.idle
            timed: list[tuple[float, float]] = []
            while time.monotonic() < began + seconds:
                t0 = time.monotonic()
                if calls == "get+put":
                    await kv.get(rng.choice(KEYS))
                if calls != "none":
                    await kv.put(rng.choice(KEYS), VALUE, expiration_ttl=TTL)
                timed.append((t0, time.monotonic()))
                await asyncio.sleep(max(0.0, t0 + 0.01 - time.monotonic()))
            stop.set()
            await beat
            busy = 1 - (selector.idle - idle) / (time.monotonic() - began)
        out.put((kvcache.__file__, beats, busy, timed))

    _run(main)


def _writer(src: str | None, path: str, start: Barrier, stop: Event, out: Any) -> None:
    """Child: put at full speed until told to stop; report the count and the time."""

    async def main(_: _TimedSelector) -> None:
        async with _kvcache(src).open_kv(f"sqlite:///{path}", namespace="bench") as kv:
            rng = random.Random(os.getpid())
            start.wait(60)
            began, count = time.monotonic(), 0
            while not stop.is_set():
                for _i in range(50):
                    await kv.put(rng.choice(KEYS), VALUE, expiration_ttl=TTL)
                count += 50
            out.put((count, time.monotonic() - began))

    _run(main)


def _burst(kind: str, src: str | None, path: str, start: Barrier, index: int, out: Any) -> None:
    """Child: BURST_PUTS puts as fast as possible once every process is ready."""
    keys = [KEYS[(i * PROCESSES + index) % len(KEYS)] for i in range(BURST_PUTS)]

    async def main(_: _TimedSelector) -> None:
        async with _putter(kind, src, path) as put:
            start.wait(60)
            began = time.monotonic()
            for key in keys:
                await put(key)
            out.put((began, time.monotonic()))

    _run(main)


def _reap(procs: list[Any], timeout: float = 300) -> None:
    """Wait for every process to exit 0; kill any still alive after."""
    try:
        for proc in procs:
            proc.join(timeout)
            if proc.exitcode != 0:
                raise RuntimeError(f"{proc.name} ended with {proc.exitcode}")
    finally:
        for proc in procs:
            if proc.is_alive():
                proc.kill()
                proc.join()


def _spawn(procs: list[Any], out: Any = None, results: int = 0) -> list[Any]:
    """Start the processes, collect `results` items from `out`, then reap them."""
    try:
        for proc in procs:
            proc.start()
        return [out.get(timeout=300) for _ in range(results)]
    finally:
        _reap(procs)


def _fresh(tmp: str, kind: str, src: str | None) -> str:
    path = os.path.join(tmp, f"{kind.replace(' ', '-')}-{time.monotonic_ns()}")
    if kind != "diskcache":
        path += ".sqlite3"  # diskcache takes a directory
    _spawn([CTX.Process(target=_populate, args=(kind, src, path))])
    return path


@dataclass
class Gaps:
    """Heartbeat gaps in ms."""

    p99: float
    max: float
    count: int

    @classmethod
    def of(cls, beats: list[float]) -> Gaps:
        gaps = sorted((b - a) * 1000 for a, b in zip(beats, beats[1:], strict=False))
        return cls(gaps[min(len(gaps) - 1, int(len(gaps) * 0.99))], gaps[-1], len(gaps))


def lock_holder(tmp: str, src: str | None) -> dict[str, float]:
    path = _fresh(tmp, "kvcache", src)
    start, out = CTX.Barrier(2), CTX.Queue()
    seconds = LOCK_SECONDS + 0.8
    victim = CTX.Process(target=_paced, args=(src, path, start, seconds, "put", out))
    holder = CTX.Process(target=_holder, args=(path, start, out))
    first, second = _spawn([victim, holder], out, 2)
    (locked, released), (origin, beats, busy, puts) = sorted([first, second], key=len)
    print(f"(kvcache from {os.path.dirname(origin)})\n")
    gaps = Gaps.of(beats)
    return {
        "max gap ms": gaps.max,
        "p99 gap ms": gaps.p99,
        "loop busy %": busy * 100,
        "beats during the lock": sum(1 for b in beats if locked < b < released),
        "puts": len(puts),
        "last waiting put ended, ms after release": (
            max(end for begin, end in puts if begin < released) - released
        )
        * 1000,
    }


def writers(tmp: str, src: str | None, calls: str = "get+put") -> dict[str, float]:
    path = _fresh(tmp, "kvcache", src)
    start, stop, out, paced_out = CTX.Barrier(PROCESSES + 1), CTX.Event(), CTX.Queue(), CTX.Queue()
    procs = [
        CTX.Process(target=_writer, args=(src, path, start, stop, out)) for _ in range(PROCESSES)
    ]
    paced = CTX.Process(target=_paced, args=(src, path, start, MIXED_SECONDS, calls, paced_out))
    try:
        for proc in [*procs, paced]:
            proc.start()
        _, beats, busy, timed = paced_out.get(timeout=120)
        stop.set()
        counts = [out.get(timeout=120) for _ in procs]
    finally:
        stop.set()
        _reap([*procs, paced])
    gaps = Gaps.of(beats)
    latencies = sorted(end - begin for begin, end in timed)
    return {
        "p99 gap ms": gaps.p99,
        "max gap ms": gaps.max,
        "loop busy %": busy * 100,
        "calls p99 ms (get + put)": latencies[int(len(latencies) * 0.99)] * 1000,
        "writers' puts/s": sum(n / seconds for n, seconds in counts),
    }


def burst(tmp: str, kind: str, src: str | None) -> float:
    path = _fresh(tmp, kind, src)
    start, out = CTX.Barrier(PROCESSES), CTX.Queue()
    procs = [
        CTX.Process(target=_burst, args=(kind, src, path, start, i, out)) for i in range(PROCESSES)
    ]
    spans = _spawn(procs, out, len(procs))
    first = min(began for began, _ in spans)
    return float(PROCESSES * BURST_PUTS / (max(end for _, end in spans) - first))


def _table(title: str, rows: dict[str, dict[str, float]]) -> None:
    names = list(rows)
    metrics = list(rows[names[0]])
    print(f"### {title}\n\n| measure | " + " | ".join(names) + " |")
    print("|---|" + "---|" * len(names))
    for metric in metrics:
        print(f"| {metric} | " + " | ".join(f"{rows[n][metric]:,.1f}" for n in names) + " |")
    print()


def _bursts(tmp: str, impls: dict[str, str | None], rounds: int) -> dict[str, list[float]]:
    """Aggregate puts/s of each store, alternating stores within every round."""
    kinds = [(name, "kvcache", src) for name, src in impls.items()]
    kinds += [(peer, peer, None) for peer in ("diskcache", "raw sqlite3")]
    out: dict[str, list[float]] = {name: [] for name, _, _ in kinds}
    for _ in range(rounds):
        for name, kind, src in kinds:
            out[name].append(burst(tmp, kind, src))
    print(f"### {PROCESSES} processes x {BURST_PUTS:,} puts on one file (median of rounds)\n")
    print("| store | aggregate puts/s | rounds |\n|---|---|---|")
    for name, values in out.items():
        shown = ", ".join(f"{v:,.0f}" for v in values)
        print(f"| {name} | {statistics.median(values):,.0f} | {shown} |")
    print()
    return out


def _summary(checks: list[tuple[str, float | None, str, float, str]]) -> None:
    print("| target | measured | limit | met |\n|---|---|---|---|")
    for label, value, sense, bound, unit in checks:
        limit = f"{sense} {bound:g}{unit}"
        if value is None:
            print(f"| {label} | not measured (give --baseline-src) | {limit} | ? |")
            continue
        met = value <= bound if sense == "≤" else value >= bound
        print(f"| {label} | {value:.2f}{unit} | {limit} | {'yes' if met else 'NO'} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--baseline-src", help="src/ of today's code (e.g. /tmp/v1/src)")
    parser.add_argument("--today-puts-per-s", type=float, help="a recorded 4 x 2,000 figure")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    impls: dict[str, str | None] = {"kvcache": None}
    if args.baseline_src:
        impls["today's code"] = os.path.abspath(args.baseline_src)
    with tempfile.TemporaryDirectory() as tmp:
        held = {name: lock_holder(tmp, src) for name, src in impls.items()}
        _table(f"1 process holds BEGIN IMMEDIATE for {LOCK_SECONDS:.0f} s", held)
        pressed = {name: writers(tmp, src) for name, src in impls.items()}
        pressed["floor: heartbeat alone"] = writers(tmp, None, "none")
        _table(f"{PROCESSES} writers at full speed, a fifth: get + put every 10 ms", pressed)
        rates = {k: statistics.median(v) for k, v in _bursts(tmp, impls, args.rounds).items()}
    today = rates.get("today's code", args.today_puts_per_s)
    _summary(
        [
            ("lock holder: max heartbeat gap", held["kvcache"]["max gap ms"], "≤", 20, " ms"),
            (
                "4 writers: fifth's p99 heartbeat gap",
                pressed["kvcache"]["p99 gap ms"],
                "≤",
                10,
                " ms",
            ),
            (
                "4 writers: fifth's max heartbeat gap",
                pressed["kvcache"]["max gap ms"],
                "≤",
                50,
                " ms",
            ),
            (
                "4 x 2,000 puts/s / today's",
                rates["kvcache"] / today if today else None,
                "≥",
                1.4,
                "×",
            ),
            ("4 x 2,000 puts/s / diskcache", rates["kvcache"] / rates["diskcache"], "≥", 2, "×"),
        ]
    )


if __name__ == "__main__":
    main()
