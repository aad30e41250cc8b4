"""Webhook service benchmark: `POST /webhooks` on `kvcache serve` beside a bare endpoint.

Reproduce (starts both servers itself on free 127.0.0.1 ports; Markdown to stdout):

    pip install -e '.[service]'
    python bench/bench_webhooks.py              # --seconds 6 --generators 2

kvcache: `kvcache serve` on the embedded SQLite store (a fresh directory), the built-in
customers/update invalidation handler, signed deliveries of which 10% repeat an
earlier webhook id (duplicates). Peer: bench/_bare_app.py, a Starlette endpoint that
reads the body and answers 200, on the same uvicorn (same workers, log level, no
access log, the same event loop and HTTP parser). Each is measured at 50 and 200
concurrent keep-alive connections, with 1 and 2 workers.

The load comes from separate processes (`--generators`), each sending pre-built
requests over raw asyncio streams (an HTTP client library would cost more CPU than
the server under test); their CPU time is reported beside the figures. Latency is
from the first byte sent to the last byte of the answer read.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from kvcache.shopify.samples import sample
from kvcache.shopify.webhooks import signed_headers

HERE = Path(__file__).resolve().parent
SECRET = "bench-secret"
SHOP = "bench.myshopify.com"
DUPLICATES = 0.10
WARMUP = 1.0


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def build_requests(count: int, seed: int) -> list[bytes]:
    """Signed customers/update deliveries; DUPLICATES of them reuse an earlier id."""
    rng = random.Random(seed)
    payload = sample("customers/update", SHOP)
    out: list[bytes] = []
    sent: list[tuple[bytes, dict[str, str]]] = []
    for _ in range(count):
        if sent and rng.random() < DUPLICATES:
            body, headers = rng.choice(sent)
        else:
            payload["id"] = rng.randrange(1, 10**12)
            payload["email"] = f"c{payload['id']}@example.com"
            body = json.dumps(payload).encode()
            headers = signed_headers(
                body,
                "customers/update",
                SHOP,
                SECRET,
                webhook_id=str(uuid.UUID(int=rng.getrandbits(128))),
            )
            sent.append((body, headers))
        head = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        out.append(
            f"POST /webhooks HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {len(body)}\r\n"
            f"{head}\r\n".encode()
            + body
        )
    return out


async def _connection(
    port: int,
    requests: Iterator[bytes],
    until: float,
    record_from: float,
    latencies: list[float],
    statuses: dict[int, int],
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for request in requests:
            started = time.perf_counter()
            if started >= until:
                return
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            await reader.readexactly(length)
            if started >= record_from:
                latencies.append(time.perf_counter() - started)
                statuses[status] = statuses.get(status, 0) + 1
    finally:
        writer.close()


def generator(port: int, connections: int, seconds: float, seed: int, out: str) -> None:
    """One load process: `connections` keep-alive connections for WARMUP + seconds."""
    requests = iter(build_requests(int(4000 * (seconds + WARMUP)) + 1000, seed))
    latencies: list[float] = []
    statuses: dict[int, int] = {}

    async def main() -> float:
        start = time.perf_counter()
        record_from, until = start + WARMUP, start + WARMUP + seconds
        await asyncio.gather(
            *(
                _connection(port, requests, until, record_from, latencies, statuses)
                for _ in range(connections)
            )
        )
        return time.perf_counter() - record_from

    usage = resource.getrusage(resource.RUSAGE_SELF)
    wall = asyncio.run(main())
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (after.ru_utime - usage.ru_utime) + (after.ru_stime - usage.ru_stime)
    Path(out).write_text(
        json.dumps({"latencies": latencies, "statuses": statuses, "wall": wall, "cpu": cpu})
    )


@dataclass
class Row:
    target: str
    workers: int
    connections: int
    rps: float
    mean: float
    median: float
    p99: float
    max: float
    non_2xx: int
    generator_cpu: float  # share of one core, summed over the generator processes

    def cells(self) -> list[str]:
        return [
            self.target,
            str(self.workers),
            str(self.connections),
            f"{self.rps:,.0f}",
            f"{self.mean:.1f}",
            f"{self.median:.1f}",
            f"{self.p99:.1f}",
            f"{self.max:.1f}",
            str(self.non_2xx),
            f"{self.generator_cpu:.0%}",
        ]


def load(
    target: str,
    workers: int,
    port: int,
    connections: int,
    seconds: float,
    generators: int,
    directory: Path,
) -> Row:
    ctx = multiprocessing.get_context("spawn")
    outs = [directory / f"gen-{i}.json" for i in range(generators)]
    share = [connections // generators + (i < connections % generators) for i in range(generators)]
    procs = [
        ctx.Process(target=generator, args=(port, n, seconds, 1000 * i + connections, str(o)))
        for i, (n, o) in enumerate(zip(share, outs, strict=True))
    ]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(seconds + 120)
    results = [json.loads(out.read_text()) for out in outs]
    latencies = sorted(ms * 1000 for r in results for ms in r["latencies"])
    statuses: dict[str, int] = {}
    for r in results:
        for status, count in r["statuses"].items():
            statuses[status] = statuses.get(status, 0) + count
    wall = max(r["wall"] for r in results)
    return Row(
        target,
        workers,
        connections,
        len(latencies) / wall,
        statistics.fmean(latencies),
        statistics.median(latencies),
        latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))],
        latencies[-1],
        sum(c for s, c in statuses.items() if not s.startswith("2")),
        sum(r["cpu"] for r in results) / wall,
    )


@contextmanager
def server(target: str, workers: int, directory: Path) -> Iterator[int]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KVCACHE_", "PROMETHEUS_"))}
    env["SHOPIFY_API_SECRET"] = SECRET
    common = ["--port", str(port), "--workers", str(workers), "--log-level", "warning"]
    if target == "kvcache":
        command = [sys.executable, "-m", "kvcache", "serve", *common]
    else:
        command = [
            sys.executable,
            "-m",
            "uvicorn",
            "_bare_app:app",
            "--host",
            "127.0.0.1",
            "--no-access-log",
            "--app-dir",
            str(HERE),
            *common,
        ]
    process = subprocess.Popen(
        command,
        cwd=directory,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.post(f"http://127.0.0.1:{port}/webhooks", content=b"{}", timeout=1)
                break
            except httpx.HTTPError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"{target} did not start") from None
                time.sleep(0.2)
        yield port
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--generators", type=int, default=2)
    args = parser.parse_args()
    rows: list[Row] = []
    for workers in (1, 2):
        for target in ("bare", "kvcache"):
            with tempfile.TemporaryDirectory(prefix="kvcache-bench-") as tmp:
                with server(target, workers, Path(tmp)) as port:
                    for connections in (50, 200):
                        rows.append(
                            load(
                                target,
                                workers,
                                port,
                                connections,
                                args.seconds,
                                args.generators,
                                Path(tmp),
                            )
                        )
                        print(f"  {' | '.join(rows[-1].cells())}", file=sys.stderr)
    print(
        "| target | workers | connections | req/s | mean ms | median ms | p99 ms | max ms "
        "| non-2xx | generator CPU |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row.cells()) + " |")
    print()
    print("| workers | connections | kvcache / bare req/s | kvcache p99 ms |")
    print("|---|---|---|---|")
    for workers in (1, 2):
        for connections in (50, 200):
            bare, ours = (
                next(
                    r
                    for r in rows
                    if (r.target, r.workers, r.connections) == (t, workers, connections)
                )
                for t in ("bare", "kvcache")
            )
            print(f"| {workers} | {connections} | {ours.rps / bare.rps:.2f}x | {ours.p99:.1f} |")


if __name__ == "__main__":
    main()
