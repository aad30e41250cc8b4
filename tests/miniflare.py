"""Workers KV as workerd implements it: the test Worker of tests/cloudflare/worker in Miniflare.

`miniflare_rest` (session scope) starts `node serve.mjs` once: the Worker in rest.mjs
serves Cloudflare's KV REST routes on real KV bindings, on a free loopback port.
Each namespace id of `NAMESPACES` is one binding. Tests that need a clean namespace
call `reset(namespace)`; `set_time` moves Miniflare's KV clock for a namespace
(its fake timers), which is how `ServerClock` lets the conformance suite move time
on the server as it does on local stores.

Miniflare switches a namespace into its own test mode at the first clock move, and
from then on refuses values over 1 KiB there. So the conformance tests that take
`clock` (they move time or compare expiries with it) run on "ns-timed", whose clock
follows theirs, and the others on "ns-conformance", which keeps the real time and
the real 25 MiB value limit.

Node and the npm packages (`npm ci` in tests/cloudflare/worker) are needed; without
them the tests skip, unless KVCACHE_REQUIRE_MINIFLARE=1 (as in CI), where they fail.
"""

from __future__ import annotations

import json
import math
import os
import queue
import shutil
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import httpx
import pytest

from backends import FakeClock

__all__ = [
    "ACCOUNT",
    "NAMESPACES",
    "WORKER_DIR",
    "MiniflareRest",
    "ServerClock",
    "conformance_namespace",
    "miniflare_rest",
    "node_or_skip",
    "start_rest",
    "start_worker",
]

WORKER_DIR = Path(__file__).parent / "cloudflare" / "worker"
ACCOUNT = "0123456789abcdef0123456789abcdef"
#: Namespace ids the test Worker binds: two for the conformance suite, others for the
#: CLI's and the benchmark; the last two are the CACHE ids (id, preview_id) of the
#: wrangler.toml that tests/test_docs.py writes for the docs.
NAMESPACES = [
    "ns-conformance",
    "ns-timed",
    "ns-store",
    "ns-spare",
    "0f2ac74b498b48028cb68387c421e279",
    "6a1ddb03f3ec4f7bb4b5a3c4a1f3f6a2",
]
START_TIMEOUT = 60.0
REPLY_TIMEOUT = 30.0
RESET_ROUNDS = 100


def conformance_namespace(*, timed: bool) -> str:
    """The conformance suite's namespace: "ns-timed" for tests that move the server's clock."""
    return NAMESPACES[1] if timed else NAMESPACES[0]


def node_or_skip() -> str:
    """The node binary, once the worker's npm packages are installed; else skip or fail."""
    node = shutil.which("node")
    missing = None
    if node is None:
        missing = "node is not installed"
    elif not (WORKER_DIR / "node_modules" / "miniflare").is_dir():
        missing = f"the test Worker's npm packages are missing (run `npm ci` in {WORKER_DIR})"
    if missing is not None:
        if os.environ.get("KVCACHE_REQUIRE_MINIFLARE") == "1":
            pytest.fail(f"KVCACHE_REQUIRE_MINIFLARE=1 but {missing}")
        pytest.skip(f"Miniflare tests need Node 20 and npm packages: {missing}")
    assert node is not None
    return node


class Lines:
    """Lines of a child's stdout, read by a thread so that waits can time out."""

    def __init__(self, stream: IO[str]) -> None:
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._thread = threading.Thread(target=self._pump, args=(stream,), daemon=True)
        self._thread.start()

    def _pump(self, stream: IO[str]) -> None:
        for line in stream:
            self._lines.put(line)
        self._lines.put(None)

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)

    def next(self, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self._lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise TimeoutError(f"no answer from the Miniflare process in {timeout} s") from None
            if line is None:
                raise RuntimeError("the Miniflare process exited")
            line = line.strip()
            if line.startswith("{"):
                answer: dict[str, Any] = json.loads(line)
                return answer


class MiniflareRest:
    """The running test Worker: its API root, tokens, and control of its namespaces."""

    def __init__(self, process: subprocess.Popen[str], lines: Lines, url: str) -> None:
        self.process = process
        self.lines = lines
        self.api_url = url
        self.account = ACCOUNT
        self.read_token = ""
        self.write_token = ""
        self._lock = threading.Lock()

    def command(self, **command: Any) -> dict[str, Any]:
        with self._lock:
            assert self.process.stdin is not None
            self.process.stdin.write(json.dumps(command) + "\n")
            self.process.stdin.flush()
            answer = self.lines.next(REPLY_TIMEOUT)
        if not answer.get("ok"):
            raise RuntimeError(f"Miniflare control {command}: {answer.get('error')}")
        return answer

    def set_time(self, namespace: str, seconds: float) -> None:
        """Miniflare's KV clock for `namespace` jumps to `seconds` since the epoch."""
        self.command(op="time", namespace=namespace, ms=round(seconds * 1000))

    def url(self, namespace: str, **options: str) -> str:
        query = "&".join(
            f"{k}={v}"
            for k, v in {"api_url": self.api_url, "rate_limit": "1000000", **options}.items()
        )
        return f"cloudflare://{self.account}/{namespace}?{query}"

    def reset(self, namespace: str, *, timed: bool = False) -> None:
        """An empty namespace; a `timed` one's clock is set back to the real time first
        (so nothing expired in a later fake time comes back)."""
        if timed:
            self.set_time(namespace, math.floor(time.time()) + 0.5)
        base = f"{self.api_url}/accounts/{self.account}/storage/kv/namespaces/{namespace}"
        headers = {"Authorization": f"Bearer {self.write_token}"}
        with httpx.Client(headers=headers, timeout=60) as client:
            for _ in range(RESET_ROUNDS):
                listed = client.get(f"{base}/keys", params={"limit": 1000}).json()
                names = [row["name"] for row in listed["result"]]
                if not names:
                    return
                answer = client.post(f"{base}/bulk/delete", json=names).json()
                if answer["result"]["unsuccessful_keys"]:
                    raise RuntimeError(f"reset {namespace}: not deleted: {answer['result']}")
        raise RuntimeError(f"reset {namespace}: still not empty after {RESET_ROUNDS} rounds")

    def stop(self) -> None:
        try:
            self.command(op="stop")
        except (RuntimeError, TimeoutError, OSError, ValueError):
            pass
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=15)
        self.lines.join(15)
        for stream in (self.process.stdin, self.process.stdout):
            if stream is not None:
                stream.close()


def start_worker(
    script: str, config: dict[str, Any], timeout: float = START_TIMEOUT
) -> tuple[subprocess.Popen[str], Lines, dict[str, Any]]:
    """Start `node script CONFIG` in the worker directory; its first JSON line."""
    node = node_or_skip()
    process = subprocess.Popen(
        [node, script, json.dumps(config)],
        cwd=WORKER_DIR,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=None,
        text=True,
    )
    assert process.stdout is not None
    lines = Lines(process.stdout)
    try:
        first = lines.next(timeout)
    except (TimeoutError, RuntimeError):
        process.kill()
        process.wait(timeout=15)
        raise
    return process, lines, first


def start_rest(read_token: str, write_token: str) -> MiniflareRest:
    """Start the REST test Worker with these two tokens (read-only, and read-write)."""
    tokens = {"read": read_token, "write": write_token}
    config = {"account": ACCOUNT, "namespaces": NAMESPACES, "tokens": tokens}
    process, lines, first = start_worker("serve.mjs", config)
    server = MiniflareRest(process, lines, first["url"])
    server.read_token, server.write_token = read_token, write_token
    return server


@pytest.fixture(scope="session")
def miniflare_rest() -> Iterator[MiniflareRest]:
    server = start_rest(f"read-{uuid.uuid4().hex}", f"write-{uuid.uuid4().hex}")
    try:
        yield server
    finally:
        server.stop()


class ServerClock(FakeClock):
    """A FakeClock that moves the server's KV clock with it (Miniflare's fake timers)."""

    def __init__(self, move: Callable[[float], None]) -> None:
        self._move = move
        super().__init__()

    @property
    def now(self) -> float:
        return self._now

    @now.setter
    def now(self, value: float) -> None:
        self._now = value
        self._move(value)
