"""Shared timing helpers for the bench/ scripts.

Every figure is µs per operation, measured in batches: each sample is one batch
of `inner` calls divided by `inner`, so the clock's resolution and the loop's
overhead stay small next to the operation. We report median, p90, p99 and max
of the samples (diskcache's practice: the mean hides the tail), and the mean beside them
(for writes it is the figure that includes the WAL checkpoints the median hides).
"""

from __future__ import annotations

import asyncio
import gc
import statistics
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

__all__ = [
    "Result",
    "measure",
    "measure_async",
    "render_table",
    "sample",
    "sample_async",
    "summarise",
]


@dataclass(frozen=True)
class Result:
    name: str
    median: float
    p90: float
    p99: float
    max: float
    mean: float = float("nan")

    def row(self) -> list[str]:
        return [
            self.name,
            f"{self.mean:.2f}",
            f"{self.median:.2f}",
            f"{self.p90:.2f}",
            f"{self.p99:.2f}",
            f"{self.max:.2f}",
        ]


def summarise(name: str, samples: list[float]) -> Result:
    """Median, p90, p99, max and mean of µs-per-call samples."""
    samples = sorted(samples)
    n = len(samples)
    return Result(
        name,
        statistics.median(samples),
        samples[min(n - 1, int(n * 0.90))],
        samples[min(n - 1, int(n * 0.99))],
        samples[-1],
        statistics.fmean(samples),
    )


@contextmanager
def _no_gc() -> Iterator[None]:
    """Collect once, then keep the collector out of the timed loop."""
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def sample(op: Callable[[int], object], *, inner: int = 100, samples: int = 200) -> list[float]:
    """µs per call of a synchronous `op(i)`, one figure per batch of `inner` calls."""
    for i in range(inner):
        op(i)
    out: list[float] = []
    with _no_gc():
        for batch in range(samples):
            start = time.perf_counter()
            for i in range(batch * inner, (batch + 1) * inner):
                op(i)
            out.append((time.perf_counter() - start) / inner * 1e6)
    return out


async def sample_async(
    op: Callable[[int], Awaitable[object]], *, inner: int = 100, samples: int = 200
) -> list[float]:
    """µs per call of an awaited `op(i)` on the running loop, one figure per batch."""
    for i in range(inner):
        await op(i)
    out: list[float] = []
    with _no_gc():
        for batch in range(samples):
            start = time.perf_counter()
            for i in range(batch * inner, (batch + 1) * inner):
                await op(i)
            out.append((time.perf_counter() - start) / inner * 1e6)
    return out


def measure(
    name: str, op: Callable[[int], object], *, inner: int = 100, samples: int = 200
) -> Result:
    """Time a synchronous `op(i)`; returns µs per call."""
    return summarise(name, sample(op, inner=inner, samples=samples))


async def measure_async(
    name: str,
    op: Callable[[int], Awaitable[object]],
    *,
    inner: int = 100,
    samples: int = 200,
) -> Result:
    """Time an awaited `op(i)` on the running loop; returns µs per call."""
    return summarise(name, await sample_async(op, inner=inner, samples=samples))


def render_table(title: str, results: Sequence[Result]) -> str:
    """A Markdown table of the results: µs per operation."""
    header = ["operation", "mean µs", "median µs", "p90 µs", "p99 µs", "max µs"]
    lines = [f"### {title}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for result in results:
        lines.append("| " + " | ".join(result.row()) + " |")
    return "\n".join(lines) + "\n"


def run(coro: Awaitable[object]) -> object:
    """asyncio.run for an awaitable (scripts' entry point)."""

    async def main() -> object:
        return await coro

    return asyncio.run(main())
