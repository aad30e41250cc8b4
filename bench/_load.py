"""The load processes of bench_webhooks.py: closed loop and open loop, over raw asyncio streams.

Closed loop: every connection sends its next request as soon as the last answer
is read, so latency and throughput bound each other (latency ≈ connections /
throughput once the server is saturated). Open loop: each connection has a fixed
schedule (the offered rate spread evenly over all connections, staggered), and a
request's latency runs from its *scheduled* send time, so a server that falls
behind is charged for the wait of every request queued behind a slow one
(coordinated omission, as wrk2 corrects it). A timer wakes the generator up to
~1 ms late; that lateness is charged to the server too.
"""

from __future__ import annotations

import asyncio
import json
import resource
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["WARMUP", "Plan", "Tally", "closed", "generate"]

WARMUP = 1.0
#: How long past the end of an open-loop run a connection that fell behind may go on.
GRACE = 10.0


@dataclass(frozen=True)
class Plan:
    """What one load process does: `rate` None is closed loop, else requests/s in total."""

    port: int
    connections: list[int]  # this process's connection indices, of `total` in all processes
    total: int
    seconds: float
    rate: float | None = None


@dataclass
class Tally:
    latencies: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    unsent: int = 0

    def add(self, status: int, latency: float) -> None:
        self.latencies.append(latency)
        self.statuses[status] = self.statuses.get(status, 0) + 1


async def _exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes
) -> int:
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    await reader.readexactly(length)
    return int(head[9:12])


async def closed(
    port: int, requests: Iterator[bytes], record_from: float, until: float, tally: Tally
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for request in requests:
            started = time.perf_counter()
            if started >= until:
                return
            status = await _exchange(reader, writer, request)
            if started >= record_from:
                tally.add(status, time.perf_counter() - started)
    finally:
        writer.close()


async def _open(
    port: int,
    requests: Iterator[bytes],
    first: float,
    interval: float,
    record_from: float,
    until: float,
    tally: Tally,
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        scheduled = first
        while scheduled < until:
            now = time.perf_counter()
            if now > until + GRACE:
                tally.unsent += int((until - scheduled) / interval) + 1
                return
            if scheduled > now:
                await asyncio.sleep(scheduled - now)
            status = await _exchange(reader, writer, next(requests))
            if scheduled >= record_from:
                tally.add(status, time.perf_counter() - scheduled)
            scheduled += interval
    finally:
        writer.close()


def generate(plan: Plan, requests: list[bytes], out: str) -> None:
    """Run `plan` for WARMUP + seconds (the warm-up is not recorded); write JSON to `out`."""
    tally = Tally()
    feed = iter(requests)

    async def main() -> tuple[float, float]:
        start = time.perf_counter() + 0.05
        record_from, until = start + WARMUP, start + WARMUP + plan.seconds
        if plan.rate is None:
            runs = [closed(plan.port, feed, record_from, until, tally) for _ in plan.connections]
        else:
            interval = plan.total / plan.rate
            runs = [
                _open(plan.port, feed, start + j / plan.rate, interval, record_from, until, tally)
                for j in plan.connections
            ]
        await asyncio.gather(*runs)
        ended = time.perf_counter()
        return min(ended, until) - record_from, ended - start

    usage = resource.getrusage(resource.RUSAGE_SELF)
    wall, elapsed = asyncio.run(main())
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (after.ru_utime - usage.ru_utime) + (after.ru_stime - usage.ru_stime)
    result: dict[str, object] = {"wall": wall, "cpu_share": cpu / elapsed, "unsent": tally.unsent}
    result |= {"latencies": tally.latencies, "statuses": tally.statuses}
    Path(out).write_text(json.dumps(result))
