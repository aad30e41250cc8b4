"""put, get, get_with_metadata and delete (checklist items 3-5, 8): values and types."""

from __future__ import annotations

import pytest

from backends import FakeClock, fresh_key, kv_error
from kvcache import KVEntry, KVStore, KVValidationError

MAX_VALUE = 26_214_400


async def test_missing_key_reads_none(kv: KVStore) -> None:
    key = fresh_key()
    assert await kv.get(key) is None
    assert await kv.get(key, "json") is None
    assert await kv.get(key, "bytes") is None
    assert await kv.get_with_metadata(key) == KVEntry(None, None)


async def test_text_is_stored_as_utf8(kv: KVStore) -> None:
    key = fresh_key()
    await kv.put(key, "héllo \U0001f600")
    assert await kv.get(key) == "héllo \U0001f600"
    assert await kv.get(key, "text") == "héllo \U0001f600"
    assert await kv.get(key, "bytes") == "héllo \U0001f600".encode()


async def test_bytes_round_trip_unchanged(kv: KVStore) -> None:
    key = fresh_key()
    data = bytes(range(256)) * 4
    await kv.put(key, data)
    got = await kv.get(key, "bytes")
    assert isinstance(got, bytes)
    assert got == data
    assert await kv.get(key, "arrayBuffer") == data


@pytest.mark.parametrize("value", [bytearray(b"\x00\x01ab"), memoryview(b"\x00\x01ab")])
async def test_buffer_values_are_stored_as_bytes(kv: KVStore, value: object) -> None:
    key = fresh_key()
    await kv.put(key, value)  # type: ignore[arg-type]
    assert await kv.get(key, "bytes") == b"\x00\x01ab"


async def test_invalid_utf8_reads_with_replacement_characters(kv: KVStore) -> None:
    key = fresh_key()
    await kv.put(key, b"ok\xff\xfe-\xc3")
    assert await kv.get(key) == "ok\ufffd\ufffd-\ufffd"
    assert (await kv.get_with_metadata(key)).value == "ok\ufffd\ufffd-\ufffd"
    assert await kv.get_many([key]) == {key: "ok\ufffd\ufffd-\ufffd"}
    assert await kv.get(key, "bytes") == b"ok\xff\xfe-\xc3"


async def test_json_type_parses(kv: KVStore) -> None:
    key = fresh_key()
    await kv.put(key, '{"a": [1, 2.5, null, true], "b": "é"}')
    assert await kv.get(key, "json") == {"a": [1, 2.5, None, True], "b": "é"}
    await kv.put(key, "0")
    assert await kv.get(key, "json") == 0


async def test_json_type_of_non_json_value_is_validation_error(kv: KVStore) -> None:
    key = fresh_key()
    await kv.put(key, "not json")
    with pytest.raises(KVValidationError):
        await kv.get(key, "json")
    with pytest.raises(KVValidationError):
        await kv.get_with_metadata(key, "json")


@pytest.mark.parametrize("method", ["get", "get_with_metadata"])
async def test_unknown_type_is_refused(kv: KVStore, method: str) -> None:
    with pytest.raises(KVValidationError, match="Unknown response type"):
        await getattr(kv, method)(fresh_key(), "stream-ish")


async def test_empty_value_is_present(kv: KVStore) -> None:
    key = fresh_key()
    await kv.put(key, "")
    assert await kv.get(key) == ""
    assert await kv.get(key, "bytes") == b""
    assert await kv.get_with_metadata(key) == KVEntry("", None)
    assert await kv.get_many([key]) == {key: ""}


async def test_put_replaces_value_metadata_and_expiry(kv: KVStore) -> None:
    key = fresh_key()
    await kv.put(key, "one", expiration_ttl=120, metadata={"v": 1})
    await kv.put(key, "two")
    assert await kv.get_with_metadata(key) == KVEntry("two", None)
    [info] = (await kv.list()).keys
    assert (info.name, info.expiration, info.metadata) == (key, None, None)


async def test_put_replaces_with_new_expiry_and_metadata(kv: KVStore, clock: FakeClock) -> None:
    key = fresh_key()
    await kv.put(key, "one")
    await kv.put(key, "two", expiration_ttl=300, metadata=[1])
    [info] = (await kv.list()).keys
    assert (info.expiration, info.metadata) == (clock.whole + 300, [1])
    assert await kv.get_with_metadata(key) == KVEntry("two", [1])


async def test_get_with_metadata(kv: KVStore) -> None:
    key = fresh_key()
    await kv.put(key, '{"x": 1}', metadata={"tag": "é", "n": [1, None]})
    entry = await kv.get_with_metadata(key)
    assert entry.value == '{"x": 1}'
    assert entry.metadata == {"tag": "é", "n": [1, None]}
    assert (await kv.get_with_metadata(key, "json")).value == {"x": 1}
    assert (await kv.get_with_metadata(key, "bytes")).value == b'{"x": 1}'


@pytest.mark.parametrize("metadata", [0, False, "", [], {}, "text", 123, 1.5, True])
async def test_metadata_keeps_its_json_type(kv: KVStore, metadata: object) -> None:
    key = fresh_key()
    await kv.put(key, "v", metadata=metadata)
    entry = await kv.get_with_metadata(key)
    assert entry.metadata == metadata
    assert type(entry.metadata) is type(metadata)
    [info] = (await kv.list()).keys
    assert info.metadata == metadata
    assert type(info.metadata) is type(metadata)


async def test_delete(kv: KVStore) -> None:
    key = fresh_key()
    await kv.put(key, "v")
    await kv.delete(key)
    assert await kv.get(key) is None
    assert (await kv.list()).keys == []


async def test_delete_missing_key_is_not_an_error(kv: KVStore) -> None:
    await kv.delete(fresh_key())
    await kv.delete(fresh_key())


@pytest.mark.parametrize("value", [{"a": 1}, ["a"], 1, 1.5, None, True, object()])
async def test_value_of_wrong_type_names_accepted_types(kv: KVStore, value: object) -> None:
    key = fresh_key()
    for call in (
        lambda: kv.put(key, value),  # type: ignore[arg-type]
        lambda: kv.put_if_absent(key, value),  # type: ignore[arg-type]
    ):
        with pytest.raises(TypeError) as info:
            await call()
        message = str(info.value)
        assert "str" in message and "bytes" in message
        assert type(value).__name__ in message
    assert await kv.get(key) is None


async def test_value_size_limit_is_exact(kv: KVStore) -> None:
    key = fresh_key()
    await kv.put(key, b"x" * MAX_VALUE)
    assert len(await kv.get(key, "bytes")) == MAX_VALUE
    with kv_error(
        f"KV PUT failed: 413 Value length of {MAX_VALUE + 1} exceeds limit of 26214400.", 413
    ):
        await kv.put(key, b"y" * (MAX_VALUE + 1))
    assert (await kv.get(key, "bytes"))[:1] == b"x"


async def test_value_size_counts_utf8_bytes(kv: KVStore) -> None:
    key = fresh_key()
    with kv_error(
        f"KV PUT failed: 413 Value length of {MAX_VALUE + 2} exceeds limit of 26214400.", 413
    ):
        await kv.put(key, "é" * (MAX_VALUE // 2 + 1))
    assert await kv.get(key) is None


@pytest.mark.parametrize("cache_ttl", [30, 60, 3600])
async def test_cache_ttl_at_least_30_is_accepted(kv: KVStore, cache_ttl: int) -> None:
    key = fresh_key()
    await kv.put(key, "v")
    assert await kv.get(key, cache_ttl=cache_ttl) == "v"
    assert (await kv.get_with_metadata(key, cache_ttl=cache_ttl)).value == "v"
    assert await kv.get_many([key], cache_ttl=cache_ttl) == {key: "v"}


@pytest.mark.parametrize(
    ("cache_ttl", "shown"), [(10, 10), (29, 29), (0, 0), (-5, -5), (float("nan"), 0), ("nan", 0)]
)
async def test_cache_ttl_below_30_is_refused(kv: KVStore, cache_ttl: object, shown: int) -> None:
    message = f"Invalid cache_ttl of {shown}. Cache TTL must be at least 30."
    with kv_error(f"KV GET failed: 400 {message}", 400):
        await kv.get(fresh_key(), cache_ttl=cache_ttl)  # type: ignore[arg-type]
    with kv_error(f"KV GET failed: 400 {message}", 400):
        await kv.get_with_metadata(fresh_key(), cache_ttl=cache_ttl)  # type: ignore[arg-type]
    with kv_error(f"KV GET_BULK failed: 400 {message}", 400):
        await kv.get_many([fresh_key()], cache_ttl=cache_ttl)  # type: ignore[arg-type]
    with kv_error(f"KV GET_BULK failed: 400 {message}", 400):
        await kv.get_many_with_metadata([fresh_key()], cache_ttl=cache_ttl)  # type: ignore[arg-type]


async def test_key_checked_before_cache_ttl(kv: KVStore) -> None:
    with kv_error("Key name cannot be empty.", 400):
        await kv.get("", cache_ttl=1)
