"""Real redis-server processes for the tests, and the pytest fixtures that start them.

Each server listens on a free 127.0.0.1 port with its files in a temporary
directory and is stopped at teardown. Without a redis-server binary the tests
skip with the install command, unless KVCACHE_REQUIRE_REDIS=1 (CI), where they fail.

    redis_url          session-wide server (no persistence) for the conformance suite
    redis_server       that server's RedisServer object
    durable_redis      a fresh server per test, AOF with fsync on every write, for
                       kill/restart tests
    redis_cluster_url  a session-wide 3-node Redis Cluster (redis+cluster:// URL)
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

__all__ = [
    "INSTALL_HINT",
    "RedisCluster",
    "RedisServer",
    "durable_redis",
    "find_binary",
    "free_port",
    "redis_cluster_url",
    "redis_server",
    "redis_url",
    "self_signed_cert",
]

REQUIRE_ENV = "KVCACHE_REQUIRE_REDIS"
INSTALL_HINT = "redis-server not found: apt-get install redis-server"
START_TIMEOUT = 10.0


def find_binary(name: str = "redis-server") -> str:
    """The binary's path; skip the test (or fail it under KVCACHE_REQUIRE_REDIS=1)."""
    path = shutil.which(name)
    if path is None:
        hint = INSTALL_HINT if name == "redis-server" else f"{name} not found: {INSTALL_HINT}"
        if os.environ.get(REQUIRE_ENV) == "1":
            pytest.fail(f"{hint} ({REQUIRE_ENV}=1 forbids skipping)")
        pytest.skip(hint)
    return path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def free_cluster_port() -> int:
    """A free port whose cluster bus port (port + 10000) is free too."""
    for _ in range(200):
        port = random.randint(20_000, 50_000)
        if _bindable(port) and _bindable(port + 10_000):
            return port
    raise RuntimeError("no free port pair for a cluster node")


def ping(port: int, *, tls: bool = False, timeout: float = 0.5) -> bool:
    """True when a server on the port is up (PONG, or NOAUTH when it wants a password)."""
    try:
        sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        if tls:
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
            sock = context.wrap_socket(sock)
        with sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith((b"+PONG", b"-NOAUTH"))
    except OSError:
        return False


def self_signed_cert(directory: Path) -> tuple[Path, Path]:
    """A certificate and key for 127.0.0.1, made with the openssl command."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl not found: apt-get install openssl")
    cert, key = directory / "cert.pem", directory / "key.pem"
    directory.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"]
        + ["-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1"]
        + ["-addext", "subjectAltName=IP:127.0.0.1"],
        check=True,
        capture_output=True,
        timeout=30,
    )
    return cert, key


class RedisServer:
    """One redis-server process; `start`, `kill` (a crash) and `stop` as often as needed.

    `durable` turns on the append-only file with an fsync per write, so every
    acknowledged write survives a SIGKILL. `tls` (certificate, key) serves TLS only.
    """

    def __init__(
        self,
        directory: Path,
        *,
        durable: bool = False,
        tls: tuple[Path, Path] | None = None,
        port: int | None = None,
        extra: Sequence[str] = (),
    ) -> None:
        self.binary = find_binary()
        self.directory = directory
        self.durable = durable
        self.tls = tls
        self.port = port if port is not None else free_port()
        self.extra = list(extra)
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        scheme = "rediss" if self.tls else "redis"
        return f"{scheme}://127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int:
        assert self.process is not None, "the server is not running"
        return self.process.pid

    @property
    def log(self) -> Path:
        return self.directory / "redis.log"

    def command(self) -> list[str]:
        persistence = ["--appendonly", "yes", "--appendfsync", "always"] if self.durable else []
        persistence = persistence or ["--appendonly", "no"]
        listen = ["--port", str(self.port)]
        if self.tls:
            cert, key = self.tls
            listen = ["--port", "0", "--tls-port", str(self.port), "--tls-auth-clients", "no"]
            listen += ["--tls-cert-file", str(cert), "--tls-key-file", str(key)]
            listen += ["--tls-ca-cert-file", str(cert)]
        return [
            self.binary,
            *listen,
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.directory),
            "--save",
            "",
            *persistence,
            "--logfile",
            str(self.log),
            "--daemonize",
            "no",
            *self.extra,
        ]

    def start(self) -> RedisServer:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + START_TIMEOUT
        while not ping(self.port, tls=self.tls is not None):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.kill()
                tail = self.log.read_text()[-2000:] if self.log.exists() else ""
                raise RuntimeError(f"redis-server on port {self.port} did not start:\n{tail}")
            time.sleep(0.02)
        return self

    def kill(self) -> None:
        """SIGKILL: the server dies as in a crash or power cut, saving nothing."""
        self._end(signal.SIGKILL)

    def stop(self) -> None:
        """SIGTERM and wait; with `--save ""` nothing is written on the way out."""
        self._end(signal.SIGTERM)

    def _end(self, sig: signal.Signals) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(sig)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class RedisCluster:
    """Three cluster-enabled redis-server masters joined by `redis-cli --cluster create`."""

    def __init__(self, directory: Path, size: int = 3) -> None:
        self.cli = find_binary("redis-cli")
        self.nodes = [
            RedisServer(
                directory / f"node{i}",
                port=free_cluster_port(),
                extra=["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"],
            )
            for i in range(size)
        ]

    @property
    def url(self) -> str:
        return f"redis+cluster://127.0.0.1:{self.nodes[0].port}"

    def start(self) -> RedisCluster:
        for node in self.nodes:
            node.start()
        addresses = [f"127.0.0.1:{node.port}" for node in self.nodes]
        subprocess.run(
            [self.cli, "--cluster", "create", *addresses, "--cluster-replicas", "0"]
            + ["--cluster-yes"],
            check=True,
            capture_output=True,
            timeout=30,
        )
        deadline = time.monotonic() + START_TIMEOUT
        while not all(self._state_ok(node.port) for node in self.nodes):
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("the Redis Cluster did not reach cluster_state:ok")
            time.sleep(0.05)
        return self

    def _state_ok(self, port: int) -> bool:
        result = subprocess.run(
            [self.cli, "-p", str(port), "cluster", "info"], capture_output=True, timeout=5
        )
        return b"cluster_state:ok" in result.stdout

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def redis_url(redis_server: RedisServer) -> str:
    return redis_server.url


@pytest.fixture
def durable_redis(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path / "redis", durable=True).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def redis_cluster_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    cluster = RedisCluster(tmp_path_factory.mktemp("redis-cluster")).start()
    try:
        yield cluster.url
    finally:
        cluster.stop()
