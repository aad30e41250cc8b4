"""Paired timing for ratio figures on a shared machine, and summaries with the mean.

`paired` times two async operations in alternating batches (A B B A A B ...), so
a load spike from another process hits both sides of a pair alike; a round's
ratio is the median of A's batches over the median of B's, and the figure is the
median over rounds. `summarise` gives mean, median, p90, p99 and max side by side.
"""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

__all__ = ["Op", "Stats", "paired", "summarise", "table"]

#: An operation: called with a running index, awaited.
Op = Callable[[int], Awaitable[object]]


@dataclass(frozen=True)
class Stats:
    name: str
    mean: float
    median: float
    p90: float
    p99: float
    max: float
    n: int


def summarise(name: str, samples: Sequence[float]) -> Stats:
    ordered = sorted(samples)
    n = len(ordered)

    def at(q: float) -> float:
        return ordered[min(n - 1, int(n * q))]

    return Stats(
        name, statistics.fmean(ordered), statistics.median(ordered), at(0.9), at(0.99), at(1), n
    )


def table(title: str, rows: Sequence[Stats], unit: str = "µs") -> str:
    """A Markdown table: one row per Stats."""
    head = f"| operation | mean {unit} | median {unit} | p90 {unit} | p99 {unit} | max {unit} |"
    lines = [f"### {title}", "", head, "|---|---|---|---|---|---|"]
    for s in rows:
        figures = " | ".join(f"{x:.2f}" for x in (s.mean, s.median, s.p90, s.p99, s.max))
        lines.append(f"| {s.name} | {figures} |")
    return "\n".join(lines) + "\n"


async def _batch(op: Op, start: int, inner: int) -> float:
    """µs per call over `inner` awaited calls."""
    begin = time.perf_counter()
    for i in range(start, start + inner):
        await op(i)
    return (time.perf_counter() - begin) / inner * 1e6


async def _batch_sync(op: Callable[[int], object], start: int, inner: int) -> float:
    """µs per call over `inner` plain calls (a synchronous peer, timed on the same loop)."""
    begin = time.perf_counter()
    for i in range(start, start + inner):
        op(i)
    return (time.perf_counter() - begin) / inner * 1e6


async def paired(
    a: Op,
    b: Op | Callable[[int], object],
    *,
    rounds: int,
    samples: int,
    inner: int,
    b_is_sync: bool = False,
) -> tuple[list[float], list[float], list[float]]:
    """All of A's and B's batch times (µs per call) and each round's ratio A / B.

    `b_is_sync`: B is a plain function (a synchronous peer such as raw sqlite3),
    called, not awaited.
    """

    async def run_b(start: int, count: int) -> float:
        if b_is_sync:
            return await _batch_sync(b, start, count)
        return await _batch(b, start, count)  # type: ignore[arg-type]

    await _batch(a, 0, inner * 4)  # warm both up
    await run_b(0, inner * 4)
    times_a: list[float] = []
    times_b: list[float] = []
    ratios: list[float] = []
    index = 0
    gc.collect()
    gc.disable()
    try:
        for _ in range(rounds):
            round_a: list[float] = []
            round_b: list[float] = []
            for sample in range(samples):
                if sample % 2 == 0:
                    ta = await _batch(a, index, inner)
                    tb = await run_b(index, inner)
                else:
                    tb = await run_b(index, inner)
                    ta = await _batch(a, index, inner)
                index += inner
                round_a.append(ta)
                round_b.append(tb)
            ratios.append(statistics.median(round_a) / statistics.median(round_b))
            times_a += round_a
            times_b += round_b
    finally:
        gc.enable()
    return times_a, times_b, ratios
