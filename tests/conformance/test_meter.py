"""The meter's counting rules, the same on every backend (Cloudflare's billing, docs/cost.md)."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import pytest

from backends import FakeClock, StoreFactory, require_atomic
from kvcache import KVStore, KVValidationError
from kvcache.kv.meter import Meter
from kvcache.sync._store import core_of
from sync_adapter import AwaitableSyncStore


def family(key: str) -> str:
    return key.split(":")[0]


def metered(kv: KVStore, clock: FakeClock) -> Meter:
    """A meter on the store (on the async core of a sync store: the facade calls it)."""
    meter = Meter(family, clock=clock)
    core: Any = kv
    if isinstance(kv, AwaitableSyncStore):
        core = core_of(kv.sync, "test")[0]
    core.meter = meter
    return meter


def totals(meter: Meter) -> Counter[tuple[str, str]]:
    counted: Counter[tuple[str, str]] = Counter()
    for bucket in meter.drain().counts:
        counted[bucket.op, bucket.family] += bucket.count
    return counted


async def test_every_key_is_an_operation_and_a_miss_is_a_read(
    kv: KVStore, clock: FakeClock
) -> None:
    meter = metered(kv, clock)
    await kv.put("user:1", "a")
    await kv.put_many([{"key": f"user:{i}", "value": "b"} for i in range(2, 5)])
    assert await kv.get("user:1") == "a"
    assert await kv.get("user:missing") is None
    await kv.get_with_metadata("cart:1")
    found = await kv.get_many(["user:1", "user:2", "cart:9"])
    assert found["cart:9"] is None
    await kv.get_many_with_metadata(["user:3", "user:4"])
    page = await kv.list(prefix="user:", limit=2)
    await kv.delete("user:4")
    await kv.delete_many(["user:2", "user:3", "cart:9"])
    assert totals(meter) == {
        ("write", "user"): 4,
        ("read", "user"): 6,
        ("read", "cart"): 2,
        ("list", "user"): 1,
        ("list_key", "user"): len(page.keys),
        ("delete", "user"): 3,
        ("delete", "cart"): 1,
    }
    assert totals(meter) == {}  # drained


async def test_refused_calls_are_not_counted(kv: KVStore, clock: FakeClock) -> None:
    meter = metered(kv, clock)
    with pytest.raises(KVValidationError):
        await kv.put("user:1", "x", expiration_ttl=1)
    with pytest.raises(KVValidationError):
        await kv.get_many(["user:1"] * 0 + [f"user:{i}" for i in range(101)])
    with pytest.raises(TypeError):
        await kv.get(7)  # type: ignore[arg-type]
    assert totals(meter) == {}


async def test_conditional_calls_count_as_read_then_write(kv: KVStore, clock: FakeClock) -> None:
    require_atomic(kv)
    meter = metered(kv, clock)
    assert await kv.put_if_absent("lock:a", "1") is True
    clock.advance(2)
    assert await kv.put_if_absent("lock:a", "2") is False
    assert await kv.delete_if_equals("lock:a", "9") is False
    assert await kv.delete_if_equals("lock:a", "1") is True
    assert totals(meter) == {("read", "lock"): 4, ("write", "lock"): 1, ("delete", "lock"): 1}


async def test_writes_to_one_key_within_a_second(kv: KVStore, clock: FakeClock) -> None:
    meter = metered(kv, clock)
    await kv.put("hot:1", "a")
    clock.advance(0.5)
    await kv.put("hot:1", "b")  # 0.5 s later: Workers KV would refuse it
    await kv.put("hot:2", "c")
    clock.advance(1.0)
    await kv.put("hot:1", "d")  # 1 s after the last: allowed
    counted = totals(meter)
    assert counted["write", "hot"] == 4
    assert counted["rapid_write", "hot"] == 1


async def test_counts_land_in_their_minute(kv: KVStore, clock: FakeClock) -> None:
    meter = metered(kv, clock)
    first = int(clock() // 60) * 60
    await kv.put("a:1", "x")
    await kv.get("a:1")
    clock.advance(60)
    await kv.put("a:2", "x")
    await kv.get("a:2")
    await kv.get("a:3")
    by_minute: Counter[tuple[int, str, str]] = Counter()
    for bucket in meter.drain().counts:
        assert bucket.namespace == kv.namespace
        by_minute[bucket.minute, bucket.op, bucket.family] += bucket.count
    assert by_minute == {
        (first, "write", "a"): 1,
        (first, "read", "a"): 1,
        (first + 60, "write", "a"): 1,
        (first + 60, "read", "a"): 2,
    }


async def test_stored_bytes_sample(make_store: StoreFactory, clock: FakeClock) -> None:
    kv = await make_store()
    await kv.put("k1", "abc", metadata={"a": 1})  # 2 + 3 + 7 bytes
    await kv.put("key2", b"\x00\x01")  # 4 + 2
    await kv.put("gone", "x", expiration_ttl=60)
    clock.advance(61)
    if isinstance(kv, AwaitableSyncStore):  # the async core, on the sync store's own loop
        core, portal = core_of(kv.sync, "test")
        size = await asyncio.to_thread(portal.run, core.stored_bytes())
    else:
        size = await kv.stored_bytes()
    if kv.backend in ("cloudflare", "workers"):
        assert size is None  # counting would cost a read per key
    else:
        assert size == 12 + 6
