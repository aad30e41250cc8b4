"""RedisStore on a real three-node Redis Cluster (redis-cli --cluster create).

Each namespace lives in one hash slot, so every script and MGET stays on one node;
the namespaces below are picked so that they land on all three nodes.
"""

from __future__ import annotations

import asyncio
import itertools

from redis.crc import key_slot

import kvcache
from backends import GENEROUS_DEADLINES, FakeClock
from kvcache.kv._redis_format import KeySpace

SLOTS = 16384


def namespaces_on_every_node(nodes: int = 3) -> list[str]:
    """One namespace per node, by the slot ranges `redis-cli --cluster create` assigns."""
    picked: dict[int, str] = {}
    for i in itertools.count():
        namespace = f"ns{i}"
        node = key_slot(KeySpace(namespace).index) * nodes // SLOTS
        picked.setdefault(node, namespace)
        if len(picked) == nodes:
            return [picked[node] for node in range(nodes)]
    raise AssertionError("unreachable")


async def test_every_operation_on_every_node(redis_cluster_url: str, clock: FakeClock) -> None:
    for namespace in namespaces_on_every_node():
        async with kvcache.open_kv(redis_cluster_url, namespace=namespace, clock=clock) as kv:
            await kv.put("a", "1", metadata={"n": namespace}, expiration_ttl=60)
            await kv.put_many([{"key": f"b{i}", "value": str(i)} for i in range(20)])
            assert await kv.get_with_metadata("a") == kvcache.KVEntry("1", {"n": namespace})
            assert await kv.get_many(["a", "b3", "zz"]) == {"a": "1", "b3": "3", "zz": None}
            page = await kv.list(prefix="b", limit=5)
            assert [key.name for key in page.keys] == ["b0", "b1", "b10", "b11", "b12"]
            assert await kv.put_if_absent("c", "x") is True
            assert await kv.put_if_absent("c", "y") is False
            assert await kv.delete_if_equals("c", "x") is True
            await kv.delete_many([f"b{i}" for i in range(20)])
            clock.advance(60)
            assert await kv.get("a") is None
            assert (await kv.list()).keys == []
            await kv.delete("a")


async def test_cluster_option_with_a_plain_url(redis_cluster_url: str) -> None:
    plain = redis_cluster_url.replace("redis+cluster://", "redis://")
    async with kvcache.open_kv(plain, namespace="opt", cluster=True) as kv:
        await kv.put("k", "v")
        assert await kv.get("k") == "v"
        await kv.delete("k")


async def test_a_thousand_concurrent_calls_wait_for_the_bounded_pool(
    redis_cluster_url: str,
) -> None:
    url = f"{redis_cluster_url}?max_connections=5&pool_timeout=60&{GENEROUS_DEADLINES}"
    async with kvcache.open_kv(url, namespace="crowd") as kv:
        calls = [kv.put_if_absent(f"c{i % 50}", str(i)) for i in range(1_000)]
        claims = await asyncio.gather(*calls)
        assert claims.count(True) == 50
        values = await asyncio.gather(*(kv.get(f"c{i % 50}") for i in range(1_000)))
        assert all(value is not None for value in values)
        await kv.delete_many([f"c{i}" for i in range(50)])
