"""Key rules (spec 3.1, 3.2 and checklist items 1-2): names, sizes, order of checks."""

from __future__ import annotations

import pytest

from backends import fresh_key, kv_error
from kvcache import KVStore, KVValidationError

OPS = ["get", "get_with_metadata", "put", "delete"]
OP_NAME = {"get": "GET", "get_with_metadata": "GET", "put": "PUT", "delete": "DELETE"}


async def call(kv: KVStore, op: str, key: str) -> object:
    if op == "put":
        await kv.put(key, "v")
        return None
    method = getattr(kv, op)
    return await method(key)


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize(
    ("key", "message"),
    [
        ("", "Key name cannot be empty."),
        (".", '"." is not allowed as a key name.'),
        ("..", '".." is not allowed as a key name.'),
    ],
)
async def test_forbidden_key_names(kv: KVStore, op: str, key: str, message: str) -> None:
    with kv_error(message, 400):
        await call(kv, op, key)


@pytest.mark.parametrize("op", OPS)
async def test_key_of_513_bytes_is_414_naming_the_length(kv: KVStore, op: str) -> None:
    with kv_error(
        f"KV {OP_NAME[op]} failed: 414 UTF-8 encoded length of 513 "
        "exceeds key length limit of 512.",
        414,
    ):
        await call(kv, op, "k" * 513)


async def test_key_length_counts_utf8_bytes(kv: KVStore) -> None:
    key = "é" * 257  # 257 characters, 514 bytes
    with kv_error(
        "KV PUT failed: 414 UTF-8 encoded length of 514 exceeds key length limit of 512.", 414
    ):
        await kv.put(key, "v")
    ok = "é" * 256  # exactly 512 bytes
    await kv.put(ok, "v")
    assert await kv.get(ok) == "v"


async def test_key_of_512_bytes_round_trips(kv: KVStore) -> None:
    key = "k" * 512
    await kv.put(key, "v")
    assert await kv.get(key) == "v"
    assert [info.name for info in (await kv.list()).keys] == [key]
    await kv.delete(key)
    assert await kv.get(key) is None


@pytest.mark.parametrize(
    "key",
    [
        " ",
        "a b",
        "a/b/c",
        "/",
        "%",
        "100%",
        "a.b",
        "...",
        ".a",
        "é",
        "日本語",
        "\U0001f600",
        "tab\there",
        "line\nbreak",
        "quote\"'",
        "back\\slash",
        "?query=1&x#frag",
        "0",
        "42",
    ],
)
async def test_any_other_string_is_a_valid_key(kv: KVStore, key: str) -> None:
    await kv.put(key, f"value of {key}")
    assert await kv.get(key) == f"value of {key}"
    assert await kv.get_many([key]) == {key: f"value of {key}"}
    assert [info.name for info in (await kv.list()).keys] == [key]
    await kv.delete(key)
    assert await kv.get(key) is None


async def test_keys_are_case_sensitive(kv: KVStore) -> None:
    await kv.put("Key", "upper")
    await kv.put("key", "lower")
    assert await kv.get("Key") == "upper"
    assert await kv.get("key") == "lower"
    assert await kv.get("KEY") is None
    await kv.delete("KEY")
    assert await kv.get("Key") == "upper"


async def test_key_checked_before_ttl(kv: KVStore) -> None:
    with kv_error("Key name cannot be empty.", 400):
        await kv.put("", "v", expiration_ttl=1)
    with kv_error(
        "KV PUT failed: 414 UTF-8 encoded length of 600 exceeds key length limit of 512.", 414
    ):
        await kv.put("k" * 600, "v", expiration_ttl=1, metadata="m" * 5000)


async def test_key_checked_before_value_type(kv: KVStore) -> None:
    with kv_error('"." is not allowed as a key name.', 400):
        await kv.put(".", {"not": "a str"})  # type: ignore[arg-type]


@pytest.mark.parametrize("key", [1, None, b"bytes", ["list"]])
async def test_non_str_key_is_type_error(kv: KVStore, key: object) -> None:
    with pytest.raises(TypeError, match="key must be str"):
        await kv.get(key)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="key must be str"):
        await kv.put(key, "v")  # type: ignore[arg-type]


async def test_key_with_lone_surrogate_is_refused(kv: KVStore) -> None:
    with pytest.raises(KVValidationError):
        await kv.put("bad\ud800", "v")


async def test_validation_error_is_a_value_error(kv: KVStore) -> None:
    with pytest.raises(ValueError):
        await kv.get("")
    assert await kv.get(fresh_key()) is None


async def test_keys_with_control_characters(kv: KVStore) -> None:
    keys = ["a", "a\x00", "a\x00b", "a\x01", "\x00", "\x1f\x7f"]
    for i, key in enumerate(keys):
        await kv.put(key, str(i))
    assert await kv.get("a\x00b") == "2"
    assert await kv.get_many(keys) == {key: str(i) for i, key in enumerate(keys)}
    listed = [info.name for info in (await kv.list()).keys]
    assert listed == sorted(keys, key=lambda k: k.encode())
    assert [info.name for info in (await kv.list(prefix="a\x00")).keys] == ["a\x00", "a\x00b"]
    first = await kv.list(prefix="a", limit=2)
    rest = await kv.list(prefix="a", cursor=first.cursor)
    assert [i.name for i in first.keys + rest.keys] == ["a", "a\x00", "a\x00b", "a\x01"]
    await kv.delete_many(["a\x00", "\x00"])
    assert await kv.get_many(["a\x00", "a\x00b", "\x00"]) == {
        "a\x00": None,
        "a\x00b": "2",
        "\x00": None,
    }
