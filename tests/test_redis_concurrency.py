"""Redis under concurrency, on a real redis-server: 1,000 concurrent operations of each
kind in one process are all served (callers beyond the pool wait in line), the pool
never opens more connections than `max_connections`, and a caller that cannot get a
connection within its deadline gets a KVBackendError that says so."""

from __future__ import annotations

import asyncio
import os
import signal
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

import kvcache
from backends import GENEROUS_DEADLINES, fresh_namespace
from kvcache import AlreadyInProgress, KVBackendError, KVStore
from kvcache.idempotency import Idempotency
from redis_server import RedisServer

N = 1_000


@pytest.fixture
def client_name() -> str:
    return f"kvc-{uuid.uuid4().hex[:10]}"


@pytest.fixture
async def kv(redis_url: str, client_name: str) -> AsyncIterator[KVStore]:
    """Long deadlines and a long wait in line: on two shared cores, 1,000 listings take
    seconds and the first burst opens 50 connections at once; what is tested here is
    that every caller is served, not how fast (the last test checks the bounded wait)."""
    url = f"{redis_url}?client_name={client_name}&pool_timeout=60&{GENEROUS_DEADLINES}"
    async with kvcache.open_kv(url, namespace=fresh_namespace()) as store:
        yield store


async def connections_named(redis_url: str, name: str) -> int:
    async with aioredis.Redis.from_url(redis_url) as raw:
        clients: list[dict[str, Any]] = await raw.client_list()
    return sum(client["name"] == name for client in clients)


async def all_of(calls: list[Awaitable[Any]]) -> list[Any]:
    """Run the calls together; fail with the first exception any of them raised."""
    results = await asyncio.gather(*calls, return_exceptions=True)
    errors = Counter(repr(result) for result in results if isinstance(result, BaseException))
    assert not errors, errors.most_common(3)
    return results


async def test_a_thousand_concurrent_calls_of_each_kind(
    kv: KVStore, redis_url: str, client_name: str
) -> None:
    keys = [f"k{i:04d}" for i in range(N)]
    await all_of([kv.put(key, key, metadata={"i": i}) for i, key in enumerate(keys)])
    assert await all_of([kv.get(key) for key in keys]) == keys
    batches = [keys[i % 900 : i % 900 + 100] for i in range(N)]
    got = await all_of([kv.get_many(batch) for batch in batches])
    assert all(
        found == {key: key for key in batch} for found, batch in zip(got, batches, strict=True)
    )
    pages = await all_of([kv.list(prefix="k0", limit=100) for _ in range(N)])
    assert {tuple(key.name for key in page.keys) for page in pages} == {tuple(keys[:100])}
    bulk = [[{"key": f"b{i:04d}-{j}", "value": "v"} for j in range(10)] for i in range(N)]
    await all_of([kv.put_many(entries) for entries in bulk])
    claims = await all_of([kv.put_if_absent(f"c{i % 50}", str(i)) for i in range(N)])
    assert claims.count(True) == 50
    owners = await kv.get_many([f"c{i}" for i in range(50)])
    deleted = await all_of([kv.delete_if_equals(f"c{i % 50}", str(i)) for i in range(N)])
    assert deleted.count(True) == 50 and all(
        owners[f"c{i % 50}"] == str(i) for i in range(N) if deleted[i]
    )
    await all_of([kv.delete(key) for key in keys])
    assert (await kv.list(prefix="k")).keys == []
    assert 0 < await connections_named(redis_url, client_name) <= 50


async def test_a_thousand_concurrent_runs_on_50_keys_run_each_handler_once(kv: KVStore) -> None:
    idem = Idempotency(kv)
    ran: Counter[str] = Counter()

    def handler(key: str) -> Callable[[], Awaitable[str]]:
        async def run() -> str:
            ran[key] += 1
            await asyncio.sleep(0.01)
            return f"done {key}"

        return run

    keys = [f"order-{i % 50}" for i in range(N)]
    outcomes = await asyncio.gather(
        *(idem.run(key, handler(key)) for key in keys), return_exceptions=True
    )
    busy = [o for o in outcomes if isinstance(o, AlreadyInProgress)]
    errors = [o for o in outcomes if isinstance(o, BaseException) and o not in busy]
    assert not errors, errors[:3]
    assert ran == Counter({f"order-{i}": 1 for i in range(50)})
    served = [o for o in outcomes if not isinstance(o, BaseException)]
    assert len(served) + len(busy) == N
    assert all(
        o.result == f"done {key}" for o, key in zip(outcomes, keys, strict=True) if o in served
    )
    again = await all_of([idem.run(key, handler(key)) for key in keys])
    assert all(
        o.duplicate and o.result == f"done {key}" for o, key in zip(again, keys, strict=True)
    )
    assert ran == Counter({f"order-{i}": 1 for i in range(50)})


async def test_the_pool_size_comes_from_the_url(redis_url: str, client_name: str) -> None:
    url = f"{redis_url}?max_connections=3&client_name={client_name}"
    async with kvcache.open_kv(url, namespace=fresh_namespace()) as kv:
        await all_of([kv.put(f"k{i}", "v") for i in range(200)])
        assert await all_of([kv.get(f"k{i}") for i in range(200)]) == ["v"] * 200
        assert await connections_named(redis_url, client_name) == 3


async def test_a_caller_that_gets_no_connection_in_time_is_told_so(tmp_path: Path) -> None:
    server = RedisServer(tmp_path).start()
    try:
        url = f"{server.url}?max_connections=1&socket_timeout=0.3&pool_timeout=0.1"
        async with kvcache.open_kv(url, namespace="n") as kv:
            await kv.put("k", "v")
            os.kill(server.pid, signal.SIGSTOP)
            try:
                outcomes = await asyncio.gather(kv.get("k"), kv.get("k"), return_exceptions=True)
            finally:
                os.kill(server.pid, signal.SIGCONT)
            first, second = outcomes
            assert isinstance(first, KVBackendError) and isinstance(second, KVBackendError)
            assert "no reply within 0.3 s" in str(first)
            assert "no connection free within 0.1 s: all 1 in use" in str(second)
            assert await kv.get("k") == "v"
    finally:
        server.stop()


async def test_callers_cancelled_while_waiting_in_line_lose_no_connection(
    redis_url: str, client_name: str
) -> None:
    url = f"{redis_url}?max_connections=2&pool_timeout=5&client_name={client_name}"
    async with kvcache.open_kv(url, namespace=fresh_namespace()) as kv:
        await kv.put("k", "v")
        for round_ in range(20):
            tasks = [asyncio.ensure_future(kv.get("k")) for _ in range(30)]
            for _ in range(round_ % 5):
                await asyncio.sleep(0)
            for task in tasks[round_ % 3 :: 3]:
                task.cancel()
            done = await asyncio.gather(*tasks, return_exceptions=True)
            assert all(d == "v" or isinstance(d, asyncio.CancelledError) for d in done)
        # Every connection came back: a full burst is served again, on the same two.
        assert await all_of([kv.get("k") for _ in range(200)]) == ["v"] * 200
        assert await connections_named(redis_url, client_name) == 2


async def test_callers_in_line_when_the_store_closes_get_a_backend_error(
    redis_url: str,
) -> None:
    kv = await kvcache.open_kv(f"{redis_url}?max_connections=1", namespace=fresh_namespace())
    calls = [asyncio.ensure_future(kv.put(f"k{i}", "v")) for i in range(20)]
    await asyncio.sleep(0)  # every call has started: one sends, the others wait in line
    await kv.close()
    done = await asyncio.gather(*calls, return_exceptions=True)
    assert all(d is None or isinstance(d, KVBackendError) for d in done), done
    assert sum(isinstance(d, KVBackendError) for d in done) >= 10
