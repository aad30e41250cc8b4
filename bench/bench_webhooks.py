"""Webhook service benchmark: `POST /webhooks` on `kvcache serve` beside a bare endpoint.

Reproduce (starts both servers itself on free 127.0.0.1 ports; Markdown to stdout):

    pip install -e '.[service]'
    python bench/bench_webhooks.py              # --seconds 6 --generators 2 --open-share 0.5
    python bench/bench_webhooks.py --rounds 5   # each open-loop row 5 times, p99: the median
    python bench/bench_webhooks.py --store redis   # kvcache on a redis-server it starts

kvcache: `kvcache serve` on the embedded SQLite store (a fresh directory; with `--store
redis`, a redis-server started for the run and emptied before each server), the built-in
customers/update invalidation handler, signed deliveries of which 10% repeat one sent
at least 400 requests earlier (duplicates). Peer: bench/_bare_app.py, a Starlette endpoint that
reads the body and answers 200, on the same uvicorn (same workers, log level, no
access log, the same event loop and HTTP parser: uvicorn's "auto" picks, printed).
Each is measured at 50 and 200 concurrent keep-alive connections, with 1 and 2 workers.

Two kinds of load (bench/_load.py), each from separate processes (`--generators`)
sending pre-built requests over raw asyncio streams (an HTTP client library would
cost more CPU than the server under test):

- closed loop: each connection sends again as soon as it has its answer. Latency is
  from the first byte sent to the last byte read; at saturation it is about
  connections / throughput, whatever the server does per request.
- open loop: a fixed offered rate, `--open-share` of the bare endpoint's closed-loop
  req/s at 200 connections with the same workers, spread over 200 connections, the
  same rate for both targets. Latency runs from each request's scheduled send time,
  so a server that falls behind is charged for the queue (no coordinated omission).

Beside each figure: the generators' CPU (share of one core, summed) and the
server's CPU per answered request (all its processes, from /proc), which the
machine's other load changes less than req/s.

And the floor (bench/_floor.py, measured first, in this process): the CPU of one
delivery's store statements run raw with `sqlite3`, no kvcache code. Where the
server is CPU-bound, 0.5x the bare endpoint's req/s allows kvcache twice the bare
endpoint's CPU per request: the bare endpoint's own HTTP work, and as much again
for everything else. The report sets the floor beside that allowance.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import multiprocessing
import os
import random
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

from _floor import sqlite_floor
from _load import WARMUP, Plan, generate
from _redis import redis_server
from kvcache.shopify.samples import sample
from kvcache.shopify.webhooks import signed_headers

HERE = Path(__file__).resolve().parent
SECRET = "bench-secret"
SHOP = "bench.myshopify.com"
DUPLICATES = 0.10
SETTLED = 400
CONNECTIONS = (50, 200)


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
        # A duplicate repeats a delivery sent at least SETTLED requests earlier: one that
        # has been answered (a copy of one still in flight is answered 409, by contract).
        if len(sent) > SETTLED and rng.random() < DUPLICATES:
            body, headers = rng.choice(sent[:-SETTLED])
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


def _generator(plan: Plan, seed: int, out: str) -> None:
    """One load process (spawned): its requests built before the clock starts."""
    if plan.rate is None:
        count = int(4000 * (plan.seconds + WARMUP)) + 1000
    else:
        share = plan.rate * len(plan.connections) / plan.total
        count = int(share * (plan.seconds + WARMUP) * 1.2) + 1000
    generate(plan, build_requests(count, seed), out)


def _cpu_seconds(pid: int) -> float:
    """User + system CPU of `pid` and its children (uvicorn's workers), from /proc."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    pending = [pid]
    while pending:
        current = pending.pop()
        try:
            fields = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
            children = Path(f"/proc/{current}/task/{current}/children").read_text().split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / ticks
        pending += [int(child) for child in children]
    return total


@dataclass
class Row:
    mode: str  # "closed", or "open @ N/s"
    target: str
    workers: int
    connections: int
    rps: float
    mean: float
    median: float
    p99: float
    max: float
    non_2xx: int
    unsent: int
    generator_cpu: float  # share of one core, summed over the generator processes
    server_cpu_us: float  # server CPU (all its processes) per answered request

    def cells(self) -> list[str]:
        return [
            self.mode,
            self.target,
            str(self.workers),
            str(self.connections),
            f"{self.rps:,.0f}",
            f"{self.mean:.1f}",
            f"{self.median:.1f}",
            f"{self.p99:.1f}",
            f"{self.max:.1f}",
            str(self.non_2xx + self.unsent),
            f"{self.generator_cpu:.0%}",
            f"{self.server_cpu_us:,.0f}",
        ]


HEADER = (
    "| load | target | workers | connections | req/s | mean ms | median ms | p99 ms | max ms "
    "| non-2xx or unsent | generator CPU | server CPU µs/req |"
)


def load(
    target: str,
    workers: int,
    server_pid: int,
    port: int,
    connections: int,
    args: argparse.Namespace,
    directory: Path,
    rate: float | None = None,
) -> Row:
    """One measurement: `args.generators` processes share `connections` (and `rate`)."""
    ctx = multiprocessing.get_context("spawn")
    count = args.generators
    outs = [directory / f"gen-{i}.json" for i in range(count)]
    plans = [
        Plan(port, list(range(i, connections, count)), connections, args.seconds, rate)
        for i in range(count)
    ]
    seed = random.Random(f"{target}{workers}{connections}{rate}").randrange(10**9)
    procs = [
        ctx.Process(target=_generator, args=(plan, seed + i, str(out)))
        for i, (plan, out) in enumerate(zip(plans, outs, strict=True))
    ]
    cpu_before, started = _cpu_seconds(server_pid), time.monotonic()
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(args.seconds + 120)
    server_cpu = _cpu_seconds(server_pid) - cpu_before
    elapsed = time.monotonic() - started
    results = [json.loads(out.read_text()) for out in outs]
    latencies = sorted(ms * 1000 for r in results for ms in r["latencies"])
    statuses: dict[str, int] = {}
    for r in results:
        for status, n in r["statuses"].items():
            statuses[status] = statuses.get(status, 0) + n
    wall = max(r["wall"] for r in results)
    # The server's CPU over the whole window (warm-up too), per request answered in it.
    answered = len(latencies) * elapsed / wall if wall else 0
    return Row(
        "closed" if rate is None else f"open @ {rate:,.0f}/s",
        target,
        workers,
        connections,
        len(latencies) / wall,
        statistics.fmean(latencies),
        statistics.median(latencies),
        latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))],
        latencies[-1],
        sum(c for s, c in statuses.items() if not s.startswith("2")),
        sum(r["unsent"] for r in results),
        sum(r["cpu_share"] for r in results),
        server_cpu / answered * 1e6 if answered else float("nan"),
    )


@contextmanager
def server(
    target: str, workers: int, directory: Path, store: str | None = None
) -> Iterator[tuple[int, int]]:
    """Start `target` on a free port (kvcache on `store`, a Redis URL, or the embedded
    SQLite default); yields (port, pid of the server's main process)."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KVCACHE_", "PROMETHEUS_"))}
    env["SHOPIFY_API_SECRET"] = SECRET
    if store is not None and target == "kvcache":
        import redis

        redis.Redis.from_url(store).flushall()  # each server starts on an empty store
        env["KVCACHE_STORE"] = store
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
        yield port, process.pid
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _redis_version() -> str:
    out = subprocess.run(["redis-server", "--version"], capture_output=True, text=True, check=True)
    return " ".join(out.stdout.split()[:3])


def _pick(rows: list[Row], mode: str, target: str, workers: int, connections: int) -> Row:
    return next(
        r
        for r in rows
        if (r.mode.split()[0], r.target, r.workers, r.connections)
        == (mode, target, workers, connections)
    )


def _report(rows: list[Row], workers_runs: tuple[int, ...], floor: float | None) -> None:
    print(HEADER)
    print("|---" * HEADER.count(" | ") + "|---|")
    for row in rows:
        print("| " + " | ".join(row.cells()) + " |")
    print()
    print("| target | measured | limit | met |")
    print("|---|---|---|---|")
    for workers in workers_runs:
        for connections in CONNECTIONS:
            bare, ours = (
                _pick(rows, "closed", t, workers, connections) for t in ("bare", "kvcache")
            )
            ratio = ours.rps / bare.rps
            met = "yes" if ratio >= 0.5 else "NO"
            print(
                f"| req/s kvcache / bare, closed loop, {workers} worker(s), {connections} "
                f"connections | {ratio:.2f}x | >= 0.5x | {met} |"
            )
            cpu = ours.server_cpu_us / bare.server_cpu_us
            print(
                f"| (context) server CPU per request, kvcache / bare, same run | {cpu:.2f}x | | |"
            )
            if floor is not None:
                print(
                    f"| (context) SQLite floor of one delivery (raw sqlite3) / what 0.5x leaves "
                    f"beside HTTP ({bare.server_cpu_us:,.0f} µs, the bare endpoint's CPU per "
                    f"request) | {floor:,.0f} µs = {floor / bare.server_cpu_us:.2f}x | | |"
                )
        closed = _pick(rows, "closed", "kvcache", workers, 200)
        # Open loop: each rate's rounds (fresh servers), judged by their median p99.
        rounds: dict[str, list[Row]] = {}
        for row in rows:
            if row.mode != "closed" and row.target == "kvcache" and row.workers == workers:
                rounds.setdefault(row.mode, []).append(row)
        for mode, group in [(closed.mode, [closed]), *rounds.items()]:
            p99 = statistics.median(r.p99 for r in group)
            failed = sum(r.non_2xx + r.unsent for r in group)
            met = "yes" if p99 < 20 and not failed else "NO"
            each = (
                ""
                if len(group) == 1
                else f" (median of {len(group)} rounds: "
                + ", ".join(f"{r.p99:.1f}" for r in group)
                + ")"
            )
            print(
                f"| kvcache p99, {mode}, {workers} worker(s), 200 connections{each} | "
                f"{p99:.1f} ms | < 20 ms | {met} |"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--generators", type=int, default=2)
    parser.add_argument(
        "--open-share",
        type=float,
        default=0.5,
        help="open-loop rate as a share of the bare endpoint's closed-loop req/s (200 conns)",
    )
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="open-loop rows per rate and target, each on a fresh server (p99: their median)",
    )
    parser.add_argument(
        "--store",
        choices=("sqlite", "redis"),
        default="sqlite",
        help="kvcache's store: the embedded SQLite default, or a redis-server started for the run",
    )
    args = parser.parse_args()
    with contextlib.ExitStack() as stack:
        store = None if args.store == "sqlite" else stack.enter_context(redis_server()).url
        _run(args, store)


def _run(args: argparse.Namespace, store: str | None) -> None:
    parsers = [name for name in ("httptools", "uvloop") if importlib.util.find_spec(name)]
    print(
        f"load average {os.getloadavg()[0]:.2f} at the start; uvicorn http/loop 'auto' "
        f"(installed: {', '.join(parsers) or 'neither httptools nor uvloop: h11, asyncio'})"
    )
    floor = None
    if store is None:
        floor = statistics.median(sqlite_floor(seed=seed) for seed in range(3))
        print(f"SQLite floor of one delivery (bench/_floor.py, median of 3): {floor:,.0f} µs CPU")
    else:
        print(f"kvcache's store: a redis-server of its own ({_redis_version()})")
    print()
    rows: list[Row] = []

    def measure(target: str, workers: int, runs: list[tuple[int, float | None]]) -> list[Row]:
        with tempfile.TemporaryDirectory(prefix="kvcache-bench-") as tmp:
            with server(target, workers, Path(tmp), store) as (port, pid):
                for connections, rate in runs:
                    rows.append(
                        load(target, workers, pid, port, connections, args, Path(tmp), rate)
                    )
                    print(f"  {' | '.join(rows[-1].cells())}", file=sys.stderr)
        return rows[-len(runs) :]

    closed: list[tuple[int, float | None]] = [(n, None) for n in CONNECTIONS]
    for workers in args.workers:
        # Open loop: `open_share` of each target's closed-loop req/s at 200 connections,
        # each rate offered to both targets (on freshly started servers).
        capacities = [measure(t, workers, closed)[-1].rps for t in ("bare", "kvcache")]
        rates: list[tuple[int, float | None]] = [(200, args.open_share * c) for c in capacities]
        for target in ("kvcache", "bare"):
            for rate in rates:  # one server each: a rate it cannot keep up with leaves a backlog
                for _ in range(args.rounds):
                    measure(target, workers, [rate])
    _report(rows, tuple(args.workers), floor)
    print()
    print(f"load average {os.getloadavg()[0]:.2f} at the end")


if __name__ == "__main__":
    main()
