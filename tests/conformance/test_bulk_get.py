"""get_many and get_many_with_metadata (spec 1.2-1.3 bulk, 3.2 bulk rows, checklist item 6)."""

from __future__ import annotations

from contextlib import AbstractContextManager as ContextManager

import pytest

from backends import fresh_key, kv_error
from kvcache import KVEntry, KVStore, KVValidationError


def bulk_error(
    status: int, message: str
) -> ContextManager[pytest.ExceptionInfo[KVValidationError]]:
    return kv_error(f"KV GET_BULK failed: {status} {message}", status)


async def test_missing_keys_map_to_none_in_request_order(kv: KVStore) -> None:
    a, b, c = fresh_key("a"), fresh_key("b"), fresh_key("c")
    await kv.put(a, "1")
    await kv.put(c, "3")
    got = await kv.get_many([c, b, a])
    assert got == {c: "3", b: None, a: "1"}
    assert list(got) == [c, b, a]


async def test_duplicates_appear_once(kv: KVStore) -> None:
    a, b = fresh_key(), fresh_key()
    await kv.put(a, "x")
    got = await kv.get_many([a, b, a, a, b])
    assert got == {a: "x", b: None}
    assert list(got) == [a, b]


async def test_keys_that_look_like_numbers_are_kept(kv: KVStore) -> None:
    await kv.put("0", "zero")
    await kv.put("42", "answer")
    assert await kv.get_many(["0", "42", "7"]) == {"0": "zero", "42": "answer", "7": None}


async def test_json_type(kv: KVStore) -> None:
    a, b, c = fresh_key(), fresh_key(), fresh_key()
    await kv.put(a, '{"n": 1}')
    await kv.put(b, "[true, null]")
    assert await kv.get_many([a, b, c], "json") == {a: {"n": 1}, b: [True, None], c: None}


async def test_json_type_with_a_non_json_value_fails_whole_call(kv: KVStore) -> None:
    good, bad, missing = fresh_key(), fresh_key(), fresh_key()
    await kv.put(good, "1")
    await kv.put(bad, "not json")
    message = "At least one of the requested keys corresponds to a non-json value"
    with bulk_error(400, message):
        await kv.get_many([good, missing, bad], "json")
    with bulk_error(400, message):
        await kv.get_many_with_metadata([bad], "json")
    assert await kv.get_many([good, bad]) == {good: "1", bad: "not json"}


@pytest.mark.parametrize("type", ["arrayBuffer", "stream", "JSON", "BYTES"])
async def test_only_text_and_json_types(kv: KVStore, type: str) -> None:
    with bulk_error(400, f'"{type}" is not a valid type. Use "json" or "text"'):
        await kv.get_many([fresh_key()], type)
    with bulk_error(400, f'"{type}" is not a valid type. Use "json" or "text"'):
        await kv.get_many_with_metadata([fresh_key()], type)


async def test_bytes_type_keeps_every_byte(kv: KVStore) -> None:
    a, b, c = fresh_key("a"), fresh_key("b"), fresh_key("c")
    await kv.put(a, b"\x00\xff\xfe raw", metadata={"m": 1})
    await kv.put(b, "é")
    got = await kv.get_many([a, b, c], "bytes")
    assert got == {a: b"\x00\xff\xfe raw", b: "é".encode(), c: None}
    assert list(got) == [a, b, c]
    with_meta = await kv.get_many_with_metadata([a, c], "bytes")
    assert with_meta == {a: KVEntry(b"\x00\xff\xfe raw", {"m": 1}), c: None}


async def test_one_to_a_hundred_keys(kv: KVStore) -> None:
    keys = [fresh_key() for _ in range(100)]
    await kv.put(keys[57], "v")
    got = await kv.get_many(keys)
    assert len(got) == 100 and got[keys[57]] == "v"
    assert await kv.get_many(keys[:1]) == {keys[0]: None}


async def test_more_than_a_hundred_keys(kv: KVStore) -> None:
    for method in (kv.get_many, kv.get_many_with_metadata):
        with bulk_error(400, "You can request a maximum of 100 keys"):
            await method([fresh_key() for _ in range(101)])


async def test_no_keys(kv: KVStore) -> None:
    for method in (kv.get_many, kv.get_many_with_metadata):
        with bulk_error(400, "You must request a minimum of 1 key"):
            await method([])


async def test_type_checked_before_count(kv: KVStore) -> None:
    with bulk_error(400, '"stream" is not a valid type. Use "json" or "text"'):
        await kv.get_many([], "stream")


@pytest.mark.parametrize(
    ("key", "status", "message"),
    [
        ("", 400, "Key names must not be empty"),
        (".", 400, 'Illegal key name ".". Please use a different name.'),
        ("..", 400, 'Illegal key name "..". Please use a different name.'),
        ("k" * 513, 414, "UTF-8 encoded length of 513 exceeds key length limit of 512."),
    ],
)
async def test_server_key_rules(kv: KVStore, key: str, status: int, message: str) -> None:
    for method in (kv.get_many, kv.get_many_with_metadata):
        with bulk_error(status, message):
            await method([fresh_key(), key])


async def test_a_single_str_is_not_a_key_list(kv: KVStore) -> None:
    with pytest.raises(TypeError):
        await kv.get_many("abc")


async def test_total_size_limit(kv: KVStore) -> None:
    half = 26_214_400 // 2
    a, b = fresh_key(), fresh_key()
    await kv.put(a, b"a" * half)
    await kv.put(b, b"b" * half)
    got = await kv.get_many([a, b])
    assert len(got[a]) + len(got[b]) == 26_214_400
    await kv.put(b, b"b" * (half + 1))
    with bulk_error(413, "Total size of request exceeds the limit of 25MB"):
        await kv.get_many([a, b])
    with bulk_error(413, "Total size of request exceeds the limit of 25MB"):
        await kv.get_many_with_metadata([a, b])


async def test_with_metadata(kv: KVStore) -> None:
    a, b, c = fresh_key("a"), fresh_key("b"), fresh_key("c")
    await kv.put(a, '{"x": 1}', metadata={"m": "é"})
    await kv.put(b, "2")
    got = await kv.get_many_with_metadata([a, b, c])
    assert got == {a: KVEntry('{"x": 1}', {"m": "é"}), b: KVEntry("2", None), c: None}
    got_json = await kv.get_many_with_metadata([a, b, c], "json")
    assert got_json == {a: KVEntry({"x": 1}, {"m": "é"}), b: KVEntry(2, None), c: None}


async def test_falsy_metadata_is_kept(kv: KVStore) -> None:
    key = fresh_key()
    await kv.put(key, "v", metadata=0)
    assert await kv.get_many_with_metadata([key]) == {key: KVEntry("v", 0)}
