"""put_many and delete_many (wrangler bulk JSON, spec 5 and 7): all or nothing."""

from __future__ import annotations

import base64

import pytest

from backends import FakeClock, fresh_key
from kvcache import KeyInfo, KVEntry, KVStore, KVValidationError


async def test_wrangler_entries(kv: KVStore, clock: FakeClock) -> None:
    await kv.put_many(
        [
            {"key": "k1", "value": "text value"},
            {"key": "k2", "value": base64.b64encode(b"\x00\xffhi").decode(), "base64": True},
            {"key": "k3", "value": '{"a":1}', "expiration_ttl": 3600, "metadata": {"tag": "x"}},
            {"key": "k4", "value": "v", "expiration": clock.whole + 600},
            {"key": "k5", "value": "v", "expiration": clock.whole + 600, "expiration_ttl": 60},
            {"key": "k6", "value": "aGk=", "base64": False},
        ]
    )
    assert await kv.get("k1") == "text value"
    assert await kv.get("k2", "bytes") == b"\x00\xffhi"
    assert await kv.get_with_metadata("k3", "json") == KVEntry({"a": 1}, {"tag": "x"})
    assert await kv.get("k6") == "aGk="
    assert (await kv.list()).keys == [
        KeyInfo("k1"),
        KeyInfo("k2"),
        KeyInfo("k3", clock.whole + 3600, {"tag": "x"}),
        KeyInfo("k4", clock.whole + 600),
        KeyInfo("k5", clock.whole + 60),
        KeyInfo("k6"),
    ]


async def test_put_many_replaces_existing(kv: KVStore) -> None:
    await kv.put("k", "old", expiration_ttl=60, metadata="old")
    await kv.put_many([{"key": "k", "value": "new"}])
    assert await kv.get_with_metadata("k") == KVEntry("new", None)
    assert (await kv.list()).keys == [KeyInfo("k")]


async def test_later_entry_for_same_key_wins(kv: KVStore) -> None:
    await kv.put_many(
        [{"key": "k", "value": "first", "metadata": 1}, {"key": "k", "value": "second"}]
    )
    assert await kv.get_with_metadata("k") == KVEntry("second", None)


async def test_empty_put_many_is_a_no_op(kv: KVStore) -> None:
    await kv.put_many([])
    assert (await kv.list()).keys == []


async def test_ten_thousand_entries(kv: KVStore) -> None:
    entries = [{"key": f"k{i:05}", "value": str(i)} for i in range(10_000)]
    await kv.put_many(entries)
    assert await kv.get("k09999") == "9999"
    page = await kv.list(prefix="k0999")
    assert len(page.keys) == 10


async def test_more_than_ten_thousand_writes_nothing(kv: KVStore) -> None:
    entries = [{"key": f"k{i:05}", "value": "v"} for i in range(10_001)]
    with pytest.raises(KVValidationError, match="10000") as info:
        await kv.put_many(entries)
    assert info.value.status == 413
    assert (await kv.list()).keys == []


async def test_bad_entry_anywhere_writes_nothing_and_is_named(
    kv: KVStore, clock: FakeClock
) -> None:
    entries: list[dict[str, object]] = [{"key": f"ok{i}", "value": "v"} for i in range(10)]
    entries[3] = {"key": "bad-ttl", "value": "v", "expiration_ttl": 10}
    entries[7] = {"key": "", "value": "v"}
    entries.append({"key": "bad-meta", "value": "v", "metadata": "m" * 2000})
    await kv.put("ok0", "before")
    with pytest.raises(KVValidationError) as info:
        await kv.put_many(entries)
    message = str(info.value)
    assert "3 of 11 entries are invalid, nothing was written" in message
    assert "entry 3: KV PUT failed: 400 Invalid expiration_ttl of 10." in message
    assert "entry 7: " in message and "Key names must not be empty" in message
    assert "entry 10: KV PUT failed: 413 Metadata length of 2002 exceeds limit of 1024." in message
    assert info.value.status == 400
    assert await kv.get("ok0") == "before"
    assert [i.name for i in (await kv.list()).keys] == ["ok0"]


async def test_many_bad_entries_name_the_first_ones(kv: KVStore) -> None:
    entries = [{"key": "..", "value": "v"} for _ in range(30)]
    with pytest.raises(KVValidationError) as info:
        await kv.put_many(entries)
    message = str(info.value)
    assert "entry 0:" in message and "entry 11:" in message
    assert "entry 12:" not in message
    assert "and 18 more" in message


@pytest.mark.parametrize(
    "bad",
    [
        {"value": "no key"},
        {"key": "no value"},
        {"key": 1, "value": "v"},
        {"key": "k", "value": {"a": 1}},
        {"key": "k", "value": 5},
        {"key": "k", "value": "v", "metadata": {1, 2}},
        "not an object",
        ["k", "v"],
    ],
)
async def test_malformed_entry_is_type_error_and_writes_nothing(kv: KVStore, bad: object) -> None:
    with pytest.raises(TypeError, match="entry 1"):
        await kv.put_many([{"key": "good", "value": "v"}, bad])
    assert await kv.get("good") is None


async def test_bad_base64_is_refused(kv: KVStore) -> None:
    with pytest.raises(KVValidationError, match="entry 0"):
        await kv.put_many([{"key": "k", "value": "not base64!", "base64": True}])
    assert await kv.get("k") is None


async def test_entry_value_size_limit(kv: KVStore) -> None:
    with pytest.raises(KVValidationError, match="Value length of 26214401") as info:
        await kv.put_many([{"key": "a", "value": "v"}, {"key": "b", "value": "x" * 26_214_401}])
    assert info.value.status == 413
    assert await kv.get("a") is None


async def test_a_single_entry_or_str_is_not_an_entry_list(kv: KVStore) -> None:
    with pytest.raises(TypeError):
        await kv.put_many({"key": "k", "value": "v"})
    with pytest.raises(TypeError):
        await kv.put_many("kv")
    assert (await kv.list()).keys == []


async def test_delete_many(kv: KVStore) -> None:
    await kv.put_many([{"key": k, "value": "v"} for k in ("a", "b", "c", "d")])
    await kv.delete_many(["a", "c", "missing", "a"])
    assert [i.name for i in (await kv.list()).keys] == ["b", "d"]
    await kv.delete_many([])
    assert [i.name for i in (await kv.list()).keys] == ["b", "d"]


async def test_delete_many_ten_thousand(kv: KVStore) -> None:
    keys = [f"k{i:05}" for i in range(10_000)]
    await kv.put_many([{"key": k, "value": "v"} for k in keys])
    await kv.put("stays", "v")
    await kv.delete_many(keys)
    assert [i.name for i in (await kv.list()).keys] == ["stays"]


async def test_delete_many_over_limit_deletes_nothing(kv: KVStore) -> None:
    await kv.put("k00000", "v")
    with pytest.raises(KVValidationError, match="10000") as info:
        await kv.delete_many([f"k{i:05}" for i in range(10_001)])
    assert info.value.status == 413
    assert await kv.get("k00000") == "v"


async def test_delete_many_bad_key_deletes_nothing(kv: KVStore) -> None:
    await kv.put("a", "v")
    with pytest.raises(KVValidationError, match="entry 1") as info:
        await kv.delete_many(["a", "", "b"])
    assert "Key names must not be empty" in str(info.value)
    with pytest.raises(TypeError, match="entry 1"):
        await kv.delete_many(["a", 5])  # type: ignore[list-item]
    assert await kv.get("a") == "v"


async def test_delete_many_of_a_str_is_type_error(kv: KVStore) -> None:
    key = fresh_key()
    for single in ("a", "b", key):
        await kv.put(single, "v")
    with pytest.raises(TypeError):
        await kv.delete_many(key)
    with pytest.raises(TypeError):
        await kv.delete_many("ab")
    assert await kv.get("a") == "v" and await kv.get("b") == "v"
