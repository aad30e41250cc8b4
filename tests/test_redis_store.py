"""RedisStore beyond the shared conformance suite: its layout in Redis, index upkeep,
round trips per call, big values and bulk writes, against a real redis-server."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis
from redis.crc import key_slot

import kvcache
from backends import GENEROUS_DEADLINES, FakeClock, fresh_namespace
from kvcache import KVBackendError, Limits
from kvcache.kv._redis_format import KeySpace, lex_range
from kvcache.kv.redis import LIST_SCAN_SLACK, PURGE_BATCH, PURGE_EVERY, RedisStore


@pytest.fixture
async def raw(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_url)
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
async def kv(redis_url: str, clock: FakeClock) -> AsyncIterator[RedisStore]:
    store = await kvcache.open_kv(
        f"{redis_url}?{GENEROUS_DEADLINES}",
        namespace=fresh_namespace(),
        clock=clock,
        connection_class=CountingConnection,
    )
    assert isinstance(store, RedisStore)
    try:
        yield store
    finally:
        await store.close()


class CountingConnection(aioredis.Connection):
    """Counts what the client sends: each send is one round trip to the server."""

    sends = 0

    async def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        CountingConnection.sends += 1
        await super().send_packed_command(command, check_health)


async def command_calls(raw: aioredis.Redis) -> dict[str, int]:
    stats: dict[str, Any] = await raw.info("commandstats")
    return {name.removeprefix("cmdstat_"): int(value["calls"]) for name, value in stats.items()}


async def round_trips(raw: aioredis.Redis, work: Any) -> tuple[int, dict[str, int]]:
    """Round trips the store made while `work` ran, and the commands the server ran
    (those inside scripts included; the INFO calls left out)."""
    before = await command_calls(raw)
    sends = CountingConnection.sends
    await work
    sends = CountingConnection.sends - sends
    after = await command_calls(raw)
    delta = {name: after[name] - before.get(name, 0) for name in after}
    delta["info"] -= 1
    return sends, {name: count for name, count in delta.items() if count}


async def test_layout_is_one_record_key_and_two_sorted_sets(
    kv: RedisStore, raw: aioredis.Redis, clock: FakeClock
) -> None:
    await kv.put("a/é", "v", expiration_ttl=120, metadata={"m": 1})
    await kv.put("b", "w")
    keys = KeySpace(kv.namespace)
    assert await raw.zrange(keys.index, 0, -1) == ["a/é".encode(), b"b"]
    assert await raw.zrange(keys.expiry, 0, -1, withscores=True) == [
        ("a/é".encode(), float(clock.whole + 120))
    ]
    ttl_ms = await raw.pttl(keys.value("a/é"))
    assert 119_000 <= ttl_ms <= 120_000
    assert await raw.pttl(keys.value("b")) == -1
    await kv.put("a/é", "v2")  # no expiry now: Redis must not expire it either
    assert await raw.pttl(keys.value("a/é")) == -1
    assert await raw.zcard(keys.expiry) == 0


async def test_every_key_of_a_namespace_shares_one_cluster_slot(
    redis_url: str, raw: aioredis.Redis
) -> None:
    for namespace in ("CACHE", "we}ird{ns}", "}", "100%"):
        async with kvcache.open_kv(redis_url, namespace=namespace) as kv:
            await kv.put("x", "1", expiration_ttl=60)
            await kv.put("y", "2")
            keys = KeySpace(namespace)
            names = [keys.value("x"), keys.value("y"), keys.index, keys.expiry]
            assert len({key_slot(name) for name in names}) == 1
            await kv.delete_many(["x", "y"])
    assert KeySpace("a}").index != KeySpace("a%7D").index


async def test_namespaces_do_not_see_each_other(redis_url: str) -> None:
    first = fresh_namespace()
    async with (
        kvcache.open_kv(redis_url, namespace=first) as a,
        kvcache.open_kv(redis_url, namespace=first + "}:v:") as b,
    ):
        await a.put("k", "a")
        await b.put("k", "b")
        assert await a.get("k") == "a"
        assert [key.name for key in (await b.list()).keys] == ["k"]
        await b.delete("k")
        assert await a.get("k") == "a"


async def test_fake_clock_expiry_hides_and_then_cleans_up(
    kv: RedisStore, raw: aioredis.Redis, clock: FakeClock
) -> None:
    await kv.put("gone", "1", expiration_ttl=60, metadata={"x": 1})
    await kv.put("kept", "2", expiration_ttl=600)
    clock.advance(60)
    keys = KeySpace(kv.namespace)
    assert await kv.get("gone") is None
    assert await kv.get_many(["gone", "kept"]) == {"gone": None, "kept": "2"}
    assert (await kv.get_with_metadata("gone")).value is None
    assert await kv.delete_if_equals("gone", "1") is False
    assert await raw.exists(keys.value("gone")) == 1  # Redis itself still holds it
    page = await kv.list()
    assert [key.name for key in page.keys] == ["kept"]
    assert await raw.exists(keys.value("gone")) == 0  # the listing dropped it
    assert await raw.zscore(keys.index, "gone") is None
    assert await raw.zscore(keys.expiry, "gone") is None
    assert await kv.put_if_absent("gone", "new") is True
    assert await kv.get("gone") == "new"


async def test_records_redis_dropped_leave_the_index_when_listed(
    kv: RedisStore, raw: aioredis.Redis
) -> None:
    """A value that Redis expired or evicted is skipped and its index entry removed."""
    for name in ("a", "b", "c"):
        await kv.put(name, name, expiration_ttl=3600)
    keys = KeySpace(kv.namespace)
    await raw.delete(keys.value("b"))
    page = await kv.list()
    assert [key.name for key in page.keys] == ["a", "c"]
    assert await raw.zrange(keys.index, 0, -1) == [b"a", b"c"]
    assert await raw.zrange(keys.expiry, 0, -1) == [b"a", b"c"]


async def test_writes_purge_expired_keys_nobody_lists(
    kv: RedisStore, raw: aioredis.Redis, clock: FakeClock
) -> None:
    expired = PURGE_BATCH + 8
    await kv.put_many(
        [{"key": f"old{i:02d}", "value": "x", "expiration_ttl": 60} for i in range(expired)]
    )
    clock.advance(61)
    keys = KeySpace(kv.namespace)
    for _ in range(PURGE_EVERY - 1):
        await kv.put("fresh", "y")
    assert await raw.zcard(keys.expiry) == expired
    await kv.put_if_absent("other", "z")  # the PURGE_EVERY-th write
    assert await raw.zcard(keys.expiry) == expired - PURGE_BATCH
    assert await raw.zcard(keys.index) == expired - PURGE_BATCH + 2
    assert await raw.exists(keys.value("old00")) == 0
    await kv.put_many([{"key": "fresh", "value": "y"}])  # bulk writes always purge
    assert await raw.zrange(keys.index, 0, -1) == [b"fresh", b"other"]


async def test_listing_walks_past_more_dead_entries_than_one_script_scans(
    kv: RedisStore, raw: aioredis.Redis
) -> None:
    dead = [f"d{i:04d}" for i in range(2 * LIST_SCAN_SLACK + 10)]
    await kv.put_many([{"key": name, "value": "x"} for name in dead])
    await kv.put_many([{"key": name, "value": "y"} for name in ("e1", "e2", "e3")])
    keys = KeySpace(kv.namespace)
    await raw.delete(*[keys.value(name) for name in dead])  # as if evicted
    page = await kv.list(limit=2)
    assert [key.name for key in page.keys] == ["e1", "e2"]
    assert page.list_complete is False
    rest = await kv.list(limit=2, cursor=page.cursor)
    assert [key.name for key in rest.keys] == ["e3"]
    assert rest.list_complete is True
    assert await raw.zcard(keys.index) == 3


async def test_long_metadata_is_listed_whole_without_reading_values(
    redis_url: str, clock: FakeClock
) -> None:
    meta = {"note": "é" * 3000}
    async with kvcache.open_kv(
        redis_url, namespace=fresh_namespace(), limits=Limits.relaxed(), clock=clock
    ) as kv:
        await kv.put("k", b"\x00" * 1000, metadata=meta)
        await kv.put("short", "v", metadata=[1])
        page = await kv.list()
        assert [(key.name, key.metadata) for key in page.keys] == [("k", meta), ("short", [1])]


@pytest.mark.parametrize(
    ("prefix", "after", "expected"),
    [
        ("", "", (b"-", b"+")),
        ("ab", "", (b"[ab", b"(ac")),
        ("ab", "abc", (b"(abc", b"(ac")),
        ("ab", "a", (b"[ab", b"(ac")),
        ("", "k", (b"(k", b"+")),
        ("é", "", ("[é".encode(), b"(\xc3\xaa")),
    ],
)
def test_lex_range(prefix: str, after: str, expected: tuple[bytes, bytes]) -> None:
    assert lex_range(prefix, after) == expected


async def test_get_many_is_one_round_trip(kv: RedisStore, raw: aioredis.Redis) -> None:
    names = [f"k{i:03d}" for i in range(100)]
    await kv.put_many([{"key": name, "value": name, "metadata": {"i": 1}} for name in names])
    found: dict[str, Any] = {}

    async def work() -> None:
        found.update(await kv.get_many(names))

    assert await round_trips(raw, work()) == (1, {"mget": 1})
    assert found == {name: name for name in names}
    assert await round_trips(raw, kv.get_many_with_metadata(names)) == (1, {"mget": 1})
    assert await round_trips(raw, kv.get("k001")) == (1, {"get": 1})
    assert await round_trips(raw, kv.get_with_metadata("k001")) == (1, {"get": 1})


async def test_cancelled_get_many_never_leaves_a_reply_for_the_next_call(
    kv: RedisStore,
) -> None:
    """get_many packs its own MGET on a pooled connection; a caller cancelled between
    send and reply must not leave that reply to be read by the next command."""
    names = [f"c{i:03d}" for i in range(100)]
    await kv.put_many([{"key": name, "value": name * 50} for name in names])
    cancelled = 0
    for round_ in range(200):
        task = asyncio.ensure_future(kv.get_many(names[round_ % 50 : round_ % 50 + 50]))
        for _ in range(round_ % 4):
            await asyncio.sleep(0)
        if task.cancel():
            cancelled += 1
        try:
            await task
        except asyncio.CancelledError:
            pass
        assert await kv.get("c007") == "c007" * 50
        second = names[(round_ + 1) % 50 : (round_ + 1) % 50 + 50]
        assert await kv.get_many(second) == {name: name * 50 for name in second}
    assert cancelled > 0


async def test_writes_are_one_script_call_each(kv: RedisStore, raw: aioredis.Redis) -> None:
    await kv.put("warm", "x")  # scripts loaded
    await kv.put_many([{"key": "warm", "value": "x"}])
    await kv.delete_many(["warm"])
    await kv.put_if_absent("warm", "x")
    await kv.delete_if_equals("warm", "x")
    await kv.delete("warm")
    await kv.list()
    for work in (
        kv.put("a", "1", expiration_ttl=60),
        kv.put_many([{"key": f"b{i}", "value": "2"} for i in range(50)]),
        kv.put_if_absent("c", "3"),
        kv.delete_if_equals("c", "3"),
        kv.delete("a"),
        kv.delete_many([f"b{i}" for i in range(50)]),
        kv.list(),
    ):
        sends, commands = await round_trips(raw, work)
        assert (sends, commands["evalsha"]) == (1, 1)


async def test_put_many_of_ten_thousand_entries_in_one_call(
    kv: RedisStore, raw: aioredis.Redis
) -> None:
    entries = [
        {"key": f"bulk:{i:05d}", "value": f"v{i}", "metadata": {"i": i}, "expiration_ttl": 3600}
        for i in range(10_000)
    ]
    await kv.put("warm", "x")
    sends, commands = await round_trips(raw, kv.put_many(entries))
    assert (sends, commands["evalsha"], commands["set"]) == (1, 1, 10_000)
    listed: list[str] = []
    page = await kv.list(prefix="bulk:")
    while True:
        listed.extend(key.name for key in page.keys)
        if page.list_complete:
            break
        page = await kv.list(prefix="bulk:", cursor=page.cursor)
    assert listed == [entry["key"] for entry in entries]
    assert page.keys[-1].metadata == {"i": 9999}
    assert await kv.get("bulk:04321") == "v4321"
    await kv.delete_many([str(entry["key"]) for entry in entries])
    assert (await kv.list(prefix="bulk:")).keys == []
    assert await raw.zcard(KeySpace(kv.namespace).index) == 1


async def test_a_25_mib_value_round_trips_byte_for_byte(kv: RedisStore) -> None:
    value = os.urandom(25 * 1024 * 1024)
    await kv.put("big", value, metadata={"size": len(value)})
    assert await kv.get("big", type="bytes") == value
    entry = await kv.get_with_metadata("big", type="bytes")
    assert entry.value == value and entry.metadata == {"size": len(value)}
    assert [key.metadata for key in (await kv.list()).keys] == [{"size": len(value)}]
    # One byte off (a fixed b"?" would equal the random last byte once in 256 runs).
    assert await kv.delete_if_equals("big", value[:-1] + bytes([value[-1] ^ 1])) is False
    assert await kv.delete_if_equals("big", value) is True
    assert await kv.get("big") is None


async def test_a_value_kvcache_did_not_write_is_a_backend_error(
    kv: RedisStore, raw: aioredis.Redis
) -> None:
    await raw.set(KeySpace(kv.namespace).value("alien"), b"hi")
    with pytest.raises(KVBackendError, match="did not write"):
        await kv.get("alien")
    with pytest.raises(KVBackendError, match="did not write"):
        await kv.get_many(["alien"])


async def test_closed_store_refuses_work_and_borrowed_clients_stay_open(
    redis_url: str, raw: aioredis.Redis
) -> None:
    store = RedisStore(raw, url=redis_url, namespace=fresh_namespace())
    await store.put("k", "v")
    await store.close()
    await store.close()
    for call in (store.get("k"), store.get_many(["k"]), store.put("k", "v"), store.list()):
        with pytest.raises(KVBackendError, match="closed"):
            await call
    assert await raw.ping() is True
    owned = await kvcache.open_kv(redis_url, namespace=fresh_namespace())
    await owned.close()
    with pytest.raises(KVBackendError, match="closed"):
        await owned.get("k")
