"""RedisStore when things go wrong, for real: no server, a wrong password, a server
killed and restarted mid-run, a hung server, bad URLs and options; and the other
ways in (TLS, unix socket)."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import pytest
import redis.exceptions

import kvcache
from backends import fresh_namespace
from kvcache import KVBackendError, KVConfigError
from kvcache.kv._redis_client import Settings, split_url
from kvcache.kv.redis import RedisStore
from redis_server import RedisServer, find_binary, free_port, self_signed_cert


async def test_open_with_no_server_names_the_url() -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    with pytest.raises(KVBackendError) as err:
        await kvcache.open_kv(url, connect_timeout=2)
    assert err.value.backend == "redis"
    assert url in str(err.value) and "cannot connect" in str(err.value)
    assert isinstance(err.value.cause, redis.exceptions.ConnectionError)


async def test_the_password_never_shows_in_an_error() -> None:
    port = free_port()
    with pytest.raises(KVBackendError) as err:
        await kvcache.open_kv(f"redis://app:s3cret-pw@127.0.0.1:{port}/0")
    assert f"redis://app:***@127.0.0.1:{port}/0" in str(err.value)
    assert "s3cret-pw" not in str(err.value)


async def test_a_wrong_password_is_a_backend_error_and_the_right_one_works(
    tmp_path: Path,
) -> None:
    server = RedisServer(tmp_path, extra=["--requirepass", "right-pw"]).start()
    try:
        base = f"127.0.0.1:{server.port}/0"
        with pytest.raises(KVBackendError) as err:
            await kvcache.open_kv(f"redis://:wrong-pw@{base}")
        assert "wrong-pw" not in str(err.value) and ":***@" in str(err.value)
        async with kvcache.open_kv(f"redis://:right-pw@{base}", namespace="n") as kv:
            await kv.put("k", "v")
            assert await kv.get("k") == "v"
            assert "right-pw" not in repr(kv)
    finally:
        server.stop()


async def test_a_restarted_server_loses_nothing_acknowledged_and_the_store_recovers(
    durable_redis: RedisServer,
) -> None:
    """SIGKILL mid-run: calls fail with KVBackendError during the outage, then the
    same store (no reopen) works again and every acknowledged write is there."""
    async with kvcache.open_kv(durable_redis.url, namespace=fresh_namespace()) as kv:
        for i in range(50):
            await kv.put(f"one:{i:03d}", f"v{i}", metadata={"i": i}, expiration_ttl=3600)
        await kv.put_many([{"key": f"bulk:{i:03d}", "value": str(i)} for i in range(150)])
        assert await kv.put_if_absent("claim", "owner-1", expiration_ttl=300)
        await kv.delete("one:000")

        durable_redis.kill()
        outage = [
            kv.get("one:001"),
            kv.get_many(["one:001", "bulk:001"]),
            kv.put("during", "x"),
            kv.list(),
            kv.put_if_absent("claim", "owner-2"),
            kv.delete_if_equals("claim", "owner-1"),
            kv.delete("one:002"),
        ]
        for call in outage:
            with pytest.raises(KVBackendError) as err:
                await call
            assert durable_redis.url in str(err.value)

        durable_redis.start()
        assert await kv.get("one:001") == "v1"
        entry = await kv.get_with_metadata("one:049")
        assert (entry.value, entry.metadata) == ("v49", {"i": 49})
        assert await kv.get("one:000") is None
        assert await kv.get("during") is None
        assert await kv.put_if_absent("claim", "owner-2") is False
        page = await kv.list(prefix="bulk:")
        assert [key.name for key in page.keys] == [f"bulk:{i:03d}" for i in range(150)]
        assert len((await kv.list(prefix="one:")).keys) == 49
        await kv.put("after", "y")
        assert await kv.get("after") == "y"


async def test_the_cache_fails_open_while_redis_is_down_and_uses_it_again_after(
    durable_redis: RedisServer,
) -> None:
    async with kvcache.open_kv(durable_redis.url, namespace=fresh_namespace()) as kv:
        cache = kvcache.Cache(kv, default_ttl=3600)
        await cache.set("customer:1", {"id": 1})
        fetched: list[int] = []

        async def fetch() -> dict[str, int]:
            fetched.append(2)
            return {"id": 2}

        durable_redis.kill()
        assert await cache.get("customer:1", default="miss") == "miss"
        assert await cache.get_or_set("customer:2", fetch) == {"id": 2}
        assert cache.stats().errors >= 2
        durable_redis.start()
        assert await cache.get("customer:1") == {"id": 1}
        assert await cache.get_or_set("customer:2", fetch) == {"id": 2}
        assert await cache.get("customer:2") == {"id": 2}
        assert fetched == [2, 2]  # fetched during the outage, then once more and stored


async def test_without_redis_server_the_tests_skip_or_fail_in_ci(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("KVCACHE_REQUIRE_REDIS", raising=False)
    with pytest.raises(pytest.skip.Exception, match="apt-get install redis-server"):
        find_binary()
    monkeypatch.setenv("KVCACHE_REQUIRE_REDIS", "1")
    with pytest.raises(pytest.fail.Exception, match="redis-server not found"):
        find_binary()


async def test_a_hung_server_times_out_then_recovers(tmp_path: Path) -> None:
    server = RedisServer(tmp_path).start()
    try:
        async with kvcache.open_kv(server.url, timeout=0.3) as kv:
            await kv.put("k", "v")
            os.kill(server.pid, signal.SIGSTOP)
            try:
                with pytest.raises(KVBackendError) as err:
                    await kv.get("k")
                assert isinstance(err.value.cause, redis.exceptions.TimeoutError)
            finally:
                os.kill(server.pid, signal.SIGCONT)
            assert await kv.get("k") == "v"
    finally:
        server.stop()


async def test_tls_with_a_rediss_url(tmp_path: Path) -> None:
    cert, key = self_signed_cert(tmp_path / "tls")
    server = RedisServer(tmp_path / "redis", tls=(cert, key)).start()
    try:
        assert server.url.startswith("rediss://")
        async with kvcache.open_kv(server.url, namespace="n", ssl_ca_certs=str(cert)) as kv:
            await kv.put("k", "over tls", metadata={"tls": True})
            assert (await kv.list()).keys[0].metadata == {"tls": True}
            assert await kv.get("k") == "over tls"
        with pytest.raises(KVBackendError):  # an untrusted certificate is refused
            await kvcache.open_kv(server.url)
    finally:
        server.stop()


async def test_unix_socket_url(tmp_path: Path) -> None:
    sock = tmp_path / "redis.sock"
    server = RedisServer(tmp_path, extra=["--unixsocket", str(sock)]).start()
    try:
        async with kvcache.open_kv(f"unix://{sock}?db=0", namespace="n") as kv:
            await kv.put("k", "v")
            assert await kv.get("k") == "v"
    finally:
        server.stop()


@pytest.mark.parametrize(
    ("url", "cluster", "expected"),
    [
        ("redis://h:1/0", None, ("redis://h:1/0", False, {})),
        ("redis+cluster://h:1", None, ("redis://h:1", True, {})),
        ("rediss+cluster://u:p@h:1", None, ("rediss://u:p@h:1", True, {})),
        (
            "redis://h:1?cluster=true&socket_timeout=3&client_name=x",
            None,
            ("redis://h:1?client_name=x", True, {"socket_timeout": "3"}),
        ),
        ("redis://h:1?cluster=no", None, ("redis://h:1", False, {})),
        ("redis://h:1", True, ("redis://h:1", True, {})),
        (
            "redis://h:1/2?write_timeout=1&max_connections=8&socket_connect_timeout=none",
            None,
            (
                "redis://h:1/2",
                False,
                {"write_timeout": "1", "max_connections": "8", "socket_connect_timeout": "none"},
            ),
        ),
    ],
)
def test_cluster_urls(
    url: str, cluster: bool | None, expected: tuple[str, bool, dict[str, str]]
) -> None:
    assert split_url(url, cluster) == expected


@pytest.mark.parametrize(
    ("url", "options", "message"),
    [
        ("redis+cluster://h:1", {"cluster": False}, "contradicts"),
        ("redis://h:1?cluster=maybe", {}, "not a boolean"),
        ("unix:///tmp/x.sock", {"cluster": True}, "unix"),
        ("redis://h:1", {"retries": -1}, "retries"),
        ("redis://h:1", {"frobnicate": 1}, "frobnicate"),
        ("redis://h:1/notadb", {}, "database number"),
        ("redis+cluster://h:1/2", {}, "only database 0"),
        ("redis://h:1?socket_timeout=soon", {}, "socket_timeout must be a number of seconds"),
        ("redis://h:1?write_timeout=-1", {}, "write_timeout must be"),
        ("redis://h:1?write_timeout=inf", {}, "write_timeout must be"),
        ("redis://h:1", {"timeout": 0}, "timeout must be"),
        ("redis://h:1", {"connect_timeout": True}, "connect_timeout must be"),
        ("redis://h:1?max_connections=0", {}, "max_connections must be an int >= 1"),
        ("redis://h:1", {"max_connections": 2.5}, "max_connections must be an int"),
        ("redis://h:1?pool_timeout=nan", {}, "pool_timeout must be"),
        ("redis://h:1?socket_timeout=", {}, "socket_timeout must be"),
    ],
)
async def test_bad_urls_and_options_are_config_errors(
    url: str, options: dict[str, Any], message: str
) -> None:
    with pytest.raises(KVConfigError, match=message):
        await kvcache.open_kv(url, **options)


async def test_deadlines_and_pool_come_from_the_url_first_then_keywords(redis_url: str) -> None:
    async with kvcache.open_kv(redis_url) as kv:
        assert isinstance(kv, RedisStore)
        assert kv.settings == Settings(
            read_timeout=0.25,
            write_timeout=0.4,
            connect_timeout=1.0,
            max_connections=50,
            pool_timeout=5.0,
            retries=0,
        )
    url = f"{redis_url}?socket_timeout=0.5&write_timeout=none&max_connections=7&retries=1"
    async with kvcache.open_kv(
        url, timeout=2, write_timeout=3, connect_timeout=4, pool_timeout=9
    ) as kv:
        assert isinstance(kv, RedisStore)
        assert kv.settings == Settings(
            read_timeout=0.5,
            write_timeout=None,
            connect_timeout=4,
            max_connections=7,
            pool_timeout=9,
            retries=1,
        )
        await kv.put("k", "v")
        assert await kv.get("k") == "v"
        await kv.delete("k")


def test_big_and_bulk_writes_get_longer_deadlines() -> None:
    settings = Settings()
    assert settings.write_deadline(0) == 0.4
    assert settings.write_deadline(25 * 1024 * 1024) == pytest.approx(0.4 + 26.2144)
    assert settings.write_deadline(0, records=10_001) == pytest.approx(1.4)
    assert Settings(write_timeout=None).write_deadline(10**9, records=10**4) is None
