"""cloudflare:// over HTTP: requests per operation, and bulk calls beside the `cloudflare` SDK.

Reproduce (needs Node 20 and `npm ci` in tests/cloudflare/worker; `pip install -e '.[bench]'`
for the SDK; writes Markdown tables to stdout):

    python bench/bench_cloudflare.py            # ROUNDS=5 rounds by default
    python bench/bench_cloudflare.py --rounds 3

What runs, in one process:
1. Requests per operation: each kvcache call against the Miniflare test Worker
   (tests/cloudflare/worker, Workers KV's REST routes on workerd's KV), counting
   the HTTP requests the store sent (`CloudflareKV.requests`).
2. Time of put_many(10,000 small pairs) and get_many(100 keys), through kvcache
   and through the SDK's own calls (`AsyncCloudflare().kv.namespaces.bulk_update`
   / `bulk_get`, the SDK's retries left at its default), against
   a. the test Worker: end to end, dominated by workerd writing 10,000 keys;
   b. a local responder that answers every request at once with a canned
      envelope (TCP_NODELAY and TCP_QUICKACK on its sockets, see _QuickServer):
      what each client itself costs per call (building, sending and parsing the
      request), with the server taken out.
   Rounds interleave kvcache and the SDK, so load elsewhere lands on both alike.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import statistics
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from cloudflare import AsyncCloudflare
from kvcache.kv.cloudflare import CloudflareKV

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from miniflare import ACCOUNT, NAMESPACES, MiniflareRest, start_rest  # noqa: E402

NAMESPACE = NAMESPACES[3]
PAIRS = [{"key": f"bench:{i:05}", "value": f"v{i}"} for i in range(10_000)]
KEYS = [f"bench:{i:05}" for i in range(0, 10_000, 100)]


def store(api_url: str, token: str) -> CloudflareKV:
    return CloudflareKV(ACCOUNT, NAMESPACE, api_token=token, api_url=api_url, rate_limit=10**9)


async def count(kv: CloudflareKV, call: Callable[[], Awaitable[object]]) -> int:
    before = kv.requests
    await call()
    return kv.requests - before


async def request_counts(server: MiniflareRest) -> list[tuple[str, int]]:
    server.reset(NAMESPACE)
    kv = store(server.api_url, server.write_token)
    big = [{"key": f"big:{i:05}", "value": "v"} for i in range(25_000)]
    rows: list[tuple[str, int]] = []
    try:
        rows.append(("put (no metadata)", await count(kv, lambda: kv.put("a", "1"))))
        rows.append(
            ("put with metadata (multipart)", await count(kv, lambda: kv.put("b", "2", metadata=1)))
        )
        rows.append(("get", await count(kv, lambda: kv.get("a"))))
        rows.append(("get_with_metadata", await count(kv, lambda: kv.get_with_metadata("b"))))

        async def put_25000() -> None:
            for start in range(0, len(big), 10_000):
                await kv.put_many(big[start : start + 10_000])

        rows.append(("put_many of 25,000 pairs (3 calls of <= 10,000)", await count(kv, put_25000)))
        keys = [entry["key"] for entry in big[:100]]
        rows.append(("get_many of 100 keys (text)", await count(kv, lambda: kv.get_many(keys))))
        rows.append(
            (
                "get_many_with_metadata of 100 keys",
                await count(kv, lambda: kv.get_many_with_metadata(keys)),
            )
        )
        rows.append(
            ("get_many of 100 keys (bytes)", await count(kv, lambda: kv.get_many(keys, "bytes")))
        )
        rows.append(("list, first page (1,000 keys)", await count(kv, lambda: kv.list())))
        rows.append(("list(limit=5), first page", await count(kv, lambda: kv.list(limit=5))))

        async def list_all() -> None:
            cursor = None
            while True:
                page = await kv.list(cursor=cursor)
                if page.list_complete:
                    return
                cursor = page.cursor

        rows.append(("list of all 25,002 keys (26 pages)", await count(kv, list_all)))
        rows.append(
            (
                "delete_many of 10,000 keys",
                await count(kv, lambda: kv.delete_many([e["key"] for e in big[:10_000]])),
            )
        )
    finally:
        await kv.close()
    return rows


class _QuickServer(ThreadingHTTPServer):
    """Loopback HTTP whose sockets never hold back an ACK or a small write.

    Without this, a client that sends a request's headers and body in two writes
    waits ~40 ms for the delayed ACK of the first (Nagle's algorithm on the client,
    delayed ACK here): the SDK's bulk_get measured 46 ms per call that way, 2 ms
    without, so the figures would show the TCP stack and not the client.
    """

    def get_request(self) -> tuple[socket.socket, Any]:
        conn, address = super().get_request()
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return conn, address


class Responder:
    """Answers every request at once: bulk writes succeed, bulk gets return 100 values."""

    def __init__(self) -> None:
        values = {key: "v" for key in KEYS}
        bulk = {"successful_key_count": 10_000, "unsuccessful_keys": []}
        self.bodies = {
            "PUT": json.dumps(self._envelope(bulk)).encode(),
            "POST": json.dumps(self._envelope({"values": values})).encode(),
        }
        self.server = _QuickServer(("127.0.0.1", 0), self._handler())
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/client/v4"

    @staticmethod
    def _envelope(result: Any) -> dict[str, Any]:
        return {"success": True, "errors": [], "messages": [], "result": result}

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        bodies = self.bodies

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _answer(self) -> None:
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                body = bodies[self.command]
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_PUT = do_POST = _answer

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


async def timed(call: Callable[[], Awaitable[object]]) -> float:
    start = time.perf_counter()
    await call()
    return (time.perf_counter() - start) * 1000


async def compare(api_url: str, token: str, rounds: int, gets: int) -> dict[str, list[float]]:
    """ms per call of each client's bulk write and bulk get, interleaved round by round."""
    kv = store(api_url, token)
    sdk = AsyncCloudflare(api_token=token, base_url=api_url)
    times: dict[str, list[float]] = {
        name: [] for name in ("kv_put", "sdk_put", "kv_get", "sdk_get")
    }

    async def sdk_put() -> object:
        return await sdk.kv.namespaces.bulk_update(NAMESPACE, account_id=ACCOUNT, body=PAIRS)  # type: ignore[arg-type, unused-ignore]

    async def sdk_get() -> object:
        return await sdk.kv.namespaces.bulk_get(NAMESPACE, account_id=ACCOUNT, keys=KEYS)

    try:
        await kv.put_many(PAIRS)  # warm both clients and the namespace
        await sdk_put()
        for _ in range(rounds):
            times["kv_put"].append(await timed(lambda: kv.put_many(PAIRS)))
            times["sdk_put"].append(await timed(sdk_put))
            for _ in range(gets):
                times["kv_get"].append(await timed(lambda: kv.get_many(KEYS)))
                times["sdk_get"].append(await timed(sdk_get))
    finally:
        await kv.close()
        await sdk.close()
    return times


def table(title: str, times: dict[str, list[float]]) -> str:
    names = {
        "kv_put": "kvcache put_many(10,000)",
        "sdk_put": "SDK bulk_update(10,000)",
        "kv_get": "kvcache get_many(100)",
        "sdk_get": "SDK bulk_get(100)",
    }
    lines = [f"### {title}", "", "| call | runs | mean ms | median ms | p90 ms | max ms |"]
    lines.append("|---|---|---|---|---|---|")
    for key, label in names.items():
        data = sorted(times[key])
        p90 = data[min(len(data) - 1, int(len(data) * 0.9))]
        lines.append(
            f"| {label} | {len(data)} | {statistics.fmean(data):.1f} | "
            f"{statistics.median(data):.1f} | {p90:.1f} | {data[-1]:.1f} |"
        )
    return "\n".join(lines) + "\n"


async def main(rounds: int) -> None:
    server = start_rest("bench-read", "bench-write")
    try:
        rows = await request_counts(server)
        print("### HTTP requests per operation (against the Miniflare test Worker)\n")
        print("| operation | requests |\n|---|---|")
        for name, requests in rows:
            print(f"| {name} | {requests} |")
        print()
        server.reset(NAMESPACE)
        worker = await compare(server.api_url, server.write_token, rounds, 10)
        print(table("Against the Miniflare test Worker (end to end)", worker))
    finally:
        server.stop()
    responder = Responder()
    try:
        local = await compare(responder.url, "bench-token", rounds * 10, 10)
        print(table("Against an instant local responder (each client's own cost)", local))
    finally:
        responder.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rounds", type=int, default=5)
    asyncio.run(main(parser.parse_args().rounds))
