"""put_if_absent and delete_if_equals, on stores whose `atomic` capability is True."""

from __future__ import annotations

import asyncio

import pytest

from backends import FakeClock, StoreFactory, fresh_key, kv_error, require_atomic
from kvcache import KeyInfo, KVEntry, KVStore


@pytest.fixture(autouse=True)
def _atomic_only(kv: KVStore) -> None:
    require_atomic(kv)


async def test_put_if_absent_writes_once(kv: KVStore) -> None:
    key = fresh_key()
    assert await kv.put_if_absent(key, "first") is True
    assert await kv.put_if_absent(key, "second") is False
    assert await kv.get(key) == "first"


async def test_put_if_absent_keeps_existing_expiry_and_metadata(
    kv: KVStore, clock: FakeClock
) -> None:
    key = fresh_key()
    await kv.put(key, "v", expiration_ttl=100, metadata="m")
    assert await kv.put_if_absent(key, "w", metadata="other") is False
    assert (await kv.list()).keys == [KeyInfo(key, clock.whole + 100, "m")]


async def test_put_if_absent_stores_ttl_and_metadata(kv: KVStore, clock: FakeClock) -> None:
    key = fresh_key()
    assert await kv.put_if_absent(key, b"\x00v", expiration_ttl=90, metadata={"o": 1}) is True
    assert await kv.get_with_metadata(key, "bytes") == KVEntry(b"\x00v", {"o": 1})
    assert (await kv.list()).keys == [KeyInfo(key, clock.whole + 90, {"o": 1})]


async def test_expired_key_counts_as_absent(kv: KVStore, clock: FakeClock) -> None:
    key = fresh_key()
    assert await kv.put_if_absent(key, "old", expiration_ttl=60, metadata="old") is True
    expires = clock.whole + 60
    clock.now = expires - 0.5
    assert await kv.put_if_absent(key, "too early") is False
    clock.now = expires
    assert await kv.put_if_absent(key, "new") is True
    assert await kv.get_with_metadata(key) == KVEntry("new", None)
    assert (await kv.list()).keys == [KeyInfo(key)]


async def test_put_if_absent_validates_like_put(kv: KVStore) -> None:
    key = fresh_key()
    with kv_error(
        "KV PUT failed: 400 Invalid expiration_ttl of 30. Expiration TTL must be at least 60.", 400
    ):
        await kv.put_if_absent(key, "v", expiration_ttl=30)
    with kv_error("Key name cannot be empty.", 400):
        await kv.put_if_absent("", "v")
    assert await kv.get(key) is None


async def test_concurrent_put_if_absent_has_one_winner(kv: KVStore) -> None:
    key = fresh_key()
    results = await asyncio.gather(*(kv.put_if_absent(key, str(i)) for i in range(20)))
    assert results.count(True) == 1
    assert await kv.get(key) == str(results.index(True))


async def test_put_if_absent_across_stores_on_one_url(make_store: StoreFactory) -> None:
    first = await make_store(namespace="shared-ns")
    second = await make_store(namespace="shared-ns")
    key = fresh_key()
    assert await first.put_if_absent(key, "a") is True
    if make_store.shared:
        assert await second.put_if_absent(key, "b") is False
        assert await second.get(key) == "a"
    else:  # each store on this URL is private
        assert await second.put_if_absent(key, "b") is True
        assert await first.get(key) == "a"


async def test_delete_if_equals(kv: KVStore) -> None:
    key = fresh_key()
    await kv.put(key, "token-1")
    assert await kv.delete_if_equals(key, "token-2") is False
    assert await kv.get(key) == "token-1"
    assert await kv.delete_if_equals(key, "token-1") is True
    assert await kv.get(key) is None
    assert await kv.delete_if_equals(key, "token-1") is False


async def test_delete_if_equals_compares_bytes(kv: KVStore) -> None:
    key = fresh_key()
    await kv.put(key, "é")
    assert await kv.delete_if_equals(key, "e") is False
    assert await kv.delete_if_equals(key, "é".encode()) is True
    await kv.put(key, b"")
    assert await kv.delete_if_equals(key, "") is True


async def test_delete_if_equals_ignores_expired(kv: KVStore, clock: FakeClock) -> None:
    key = fresh_key()
    await kv.put(key, "v", expiration_ttl=60)
    clock.advance(60)
    assert await kv.delete_if_equals(key, "v") is False


async def test_delete_if_equals_missing(kv: KVStore) -> None:
    assert await kv.delete_if_equals(fresh_key(), "v") is False


async def test_delete_if_equals_validates(kv: KVStore) -> None:
    with kv_error('".." is not allowed as a key name.', 400):
        await kv.delete_if_equals("..", "v")
    with pytest.raises(TypeError, match="str"):
        await kv.delete_if_equals(fresh_key(), 5)  # type: ignore[arg-type]
