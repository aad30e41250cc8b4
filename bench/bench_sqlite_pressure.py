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
floor). Loop busy: the share of wall time the loop spent outside its selector, that is
running callbacks, including any wait inside sqlite3.
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
from collections.abc import Callable, Coroutine
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


def _populate(kind: str, src: str | None, path: str) -> None:
    """Child: fill a fresh store of `kind` with the 10,000 keys."""
    if kind == "diskcache":
        import diskcache

        with diskcache.Cache(path) as cache:
            for key in KEYS:
                cache.set(key, VALUE, expire=TTL)
    elif kind == "raw sqlite3":
        raw_sqlite(path).close()
    else:

        async def fill(_: _TimedSelector) -> None:
            async with _kvcache(src).open_kv(f"sqlite:///{path}", namespace="bench") as kv:
                await kv.put_many([{"key": k, "value": VALUE, "expiration_ttl": TTL} for k in KEYS])

        _run(fill)


def _holder(path: str, ready: Event, out: Any) -> None:
    """Child: hold the write lock for LOCK_SECONDS once the victim is running."""
    conn = sqlite3.connect(path, isolation_level=None, timeout=30)
    ready.wait(60)
    time.sleep(0.3)
    conn.execute("BEGIN IMMEDIATE")
    locked = time.monotonic()
    time.sleep(LOCK_SECONDS)
    released = time.monotonic()
    conn.execute("COMMIT")
    conn.close()
    out.put((locked, released))


def _victim(src: str | None, path: str, ready: Event, out: Any) -> None:
    """Child: heartbeat and a put every 10 ms until 0.5 s after the holder lets go."""

    async def main(selector: _TimedSelector) -> None:
        kvcache = _kvcache(src)
        async with kvcache.open_kv(f"sqlite:///{path}", namespace="bench") as kv:
            stop, beats = asyncio.Event(), list[float]()
            beat = asyncio.create_task(_heartbeat(stop, beats))
            puts: list[tuple[float, float]] = []
            ready.set()
            deadline = time.monotonic() + 0.8 + LOCK_SECONDS
            i = 0
            while time.monotonic() < deadline:
                start = time.monotonic()
                await kv.put(KEYS[i % len(KEYS)], VALUE, expiration_ttl=TTL)
                puts.append((start, time.monotonic()))
                i += 1
                await asyncio.sleep(max(0.0, start + 0.01 - time.monotonic()))
            stop.set()
            await beat
        out.put((kvcache.__file__, beats, puts))

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


def _mixed(src: str | None, path: str, start: Barrier, out: Any) -> None:
    """Child: one get and one put every 10 ms beside the heartbeat, for MIXED_SECONDS."""

    async def main(selector: _TimedSelector) -> None:
        async with _kvcache(src).open_kv(f"sqlite:///{path}", namespace="bench") as kv:
            rng = random.Random(os.getpid())
            start.wait(60)
            await asyncio.sleep(0.5)
            stop, beats = asyncio.Event(), list[float]()
            beat = asyncio.create_task(_heartbeat(stop, beats))
            began, idle = time.monotonic(), selector.idle
            latencies: list[float] = []
            while time.monotonic() < began + MIXED_SECONDS:
                t0 = time.monotonic()
                await kv.get(rng.choice(KEYS))
                await kv.put(rng.choice(KEYS), VALUE, expiration_ttl=TTL)
                latencies.append(time.monotonic() - t0)
                await asyncio.sleep(max(0.0, t0 + 0.01 - time.monotonic()))
            stop.set()
            await beat
            wall = time.monotonic() - began
            out.put((beats, 1 - (selector.idle - idle) / wall, latencies))

    _run(main)


def _burst(kind: str, src: str | None, path: str, start: Barrier, index: int, out: Any) -> None:
    """Child: BURST_PUTS puts as fast as possible once every process is ready."""
    keys = [KEYS[(i * PROCESSES + index) % len(KEYS)] for i in range(BURST_PUTS)]
    if kind == "diskcache":
        import diskcache

        with diskcache.Cache(path) as cache:
            start.wait(60)
            began = time.monotonic()
            for key in keys:
                cache.set(key, VALUE, expire=TTL)
            out.put((began, time.monotonic()))
    elif kind == "raw sqlite3":
        conn = sqlite3.connect(path, isolation_level=None, timeout=30)
        conn.execute("PRAGMA synchronous = NORMAL")
        start.wait(60)
        began = time.monotonic()
        for key in keys:
            conn.execute(RAW_PUT, ("bench", key, VALUE.encode(), int(time.time()) + TTL, None))
        out.put((began, time.monotonic()))
        conn.close()
    else:

        async def main(_: _TimedSelector) -> None:
            async with _kvcache(src).open_kv(f"sqlite:///{path}", namespace="bench") as kv:
                start.wait(60)
                began = time.monotonic()
                for key in keys:
                    await kv.put(key, VALUE, expiration_ttl=TTL)
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
        path += ".sqlite3"
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
    ready, out = CTX.Event(), CTX.Queue()
    victim = CTX.Process(target=_victim, args=(src, path, ready, out))
    holder = CTX.Process(target=_holder, args=(path, ready, out))
    first, second = _spawn([victim, holder], out, 2)
    (locked, released), (origin, beats, puts) = sorted([first, second], key=len)
    print(f"    (kvcache from {os.path.dirname(origin)})")
    during = [b for b in beats if locked < b < released]
    after = [end for start, end in puts if start < released]
    gaps = Gaps.of(beats)
    return {
        "max gap ms": gaps.max,
        "p99 gap ms": gaps.p99,
        "beats during lock": len(during),
        "puts": len(puts),
        "last put that met the lock ended after release, ms": (max(after) - released) * 1000,
    }


def writers(tmp: str, src: str | None) -> dict[str, float]:
    path = _fresh(tmp, "kvcache", src)
    start, stop, out, mixed_out = CTX.Barrier(PROCESSES + 1), CTX.Event(), CTX.Queue(), CTX.Queue()
    procs = [
        CTX.Process(target=_writer, args=(src, path, start, stop, out)) for _ in range(PROCESSES)
    ]
    mixed = CTX.Process(target=_mixed, args=(src, path, start, mixed_out))
    try:
        for proc in [*procs, mixed]:
            proc.start()
        beats, busy, latencies = mixed_out.get(timeout=120)
        stop.set()
        counts = [out.get(timeout=120) for _ in procs]
    finally:
        stop.set()
        _reap([*procs, mixed])
    gaps = Gaps.of(beats)
    latencies.sort()
    return {
        "p99 gap ms": gaps.p99,
        "max gap ms": gaps.max,
        "loop busy %": busy * 100,
        "get+put p99 ms": latencies[int(len(latencies) * 0.99)] * 1000,
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--baseline-src", help="src/ of today's code (e.g. /tmp/v1/src)")
    parser.add_argument("--today-puts-per-s", type=float, help="a recorded 4 x 2,000 figure")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    impls: dict[str, str | None] = {"kvcache": None}
    if args.baseline_src:
        impls["today's code"] = os.path.abspath(args.baseline_src)
    with tempfile.TemporaryDirectory() as tmp:
        held = {name: lock_holder(tmp, src) for name, src in impls.items()}
        _table(f"1 process holds BEGIN IMMEDIATE for {LOCK_SECONDS:.0f} s", held)
        pressed = {name: writers(tmp, src) for name, src in impls.items()}
        _table(f"{PROCESSES} writers at full speed, a fifth: get + put every 10 ms", pressed)
        kinds = [(name, "kvcache", src) for name, src in impls.items()]
        kinds += [(peer, peer, None) for peer in ("diskcache", "raw sqlite3")]
        rounds: dict[str, list[float]] = {name: [] for name, _, _ in kinds}
        for _ in range(args.rounds):
            for name, kind, src in kinds:
                rounds[name].append(burst(tmp, kind, src))
    rates = {name: statistics.median(values) for name, values in rounds.items()}
    print(f"### {PROCESSES} processes x {BURST_PUTS:,} puts on one file (median of rounds)\n")
    print("| store | aggregate puts/s | rounds |\n|---|---|---|")
    for name, values in rounds.items():
        print(f"| {name} | {rates[name]:,.0f} | " + ", ".join(f"{v:,.0f}" for v in values) + " |")
    print()
    today = rates.get("today's code", args.today_puts_per_s)
    checks: list[tuple[str, float | None, str, bool | None]] = [
        ("lock holder: max heartbeat gap", held["kvcache"]["max gap ms"], "≤ 20 ms", None),
        ("4 writers: fifth's p99 heartbeat gap", pressed["kvcache"]["p99 gap ms"], "≤ 10 ms", None),
        ("4 writers: fifth's max heartbeat gap", pressed["kvcache"]["max gap ms"], "≤ 50 ms", None),
        (
            "4 x 2,000 puts/s / today's",
            rates["kvcache"] / today if today else None,
            "≥ 1.4×",
            None,
        ),
        ("4 x 2,000 puts/s / diskcache", rates["kvcache"] / rates["diskcache"], "≥ 2×", None),
    ]
    print("| target | measured | limit | met |\n|---|---|---|---|")
    for label, value, limit, _ in checks:
        if value is None:
            print(f"| {label} | not measured (give --baseline-src) | {limit} | ? |")
            continue
        bound = float(limit.split()[1].rstrip("×"))
        met = value <= bound if limit.startswith("≤") else value >= bound
        unit = " ms" if "ms" in limit else "×"
        print(f"| {label} | {value:.2f}{unit} | {limit} | {'yes' if met else 'NO'} |")


if __name__ == "__main__":
    main()
