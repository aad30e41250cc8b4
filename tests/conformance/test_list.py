"""list (spec 1.6, checklist item 7): order, prefix, limit, cursors, KeyInfo fields."""

from __future__ import annotations

import pytest

from backends import FakeClock, kv_error
from kvcache import KeyInfo, KVStore, KVValidationError, ListPage


async def names(kv: KVStore, prefix: str | None = None, limit: int = 1000) -> list[str]:
    """Every listed name, following cursors, checking each page's shape on the way."""
    out: list[str] = []
    cursor: str | None = None
    while True:
        page = await kv.list(prefix=prefix, limit=limit, cursor=cursor)
        assert_page_shape(page, limit)
        out.extend(info.name for info in page.keys)
        if page.list_complete:
            return out
        cursor = page.cursor


def assert_page_shape(page: ListPage, limit: int) -> None:
    assert (page.cursor is None) == page.list_complete
    if not page.list_complete:
        assert len(page.keys) == limit
        assert isinstance(page.cursor, str) and page.cursor
    else:
        assert len(page.keys) <= limit


async def put_all(kv: KVStore, keys: list[str]) -> None:
    await kv.put_many([{"key": key, "value": "v"} for key in keys])


async def test_empty_namespace(kv: KVStore) -> None:
    assert await kv.list() == ListPage([], True, None)


async def test_order_is_utf8_byte_order(kv: KVStore) -> None:
    keys = ["b", "a", "Z", "~", "é", "ÿ", "Ā", "\ue000", "\uffff", "\U0001f600", "aa", "a b", "0"]
    for key in keys:
        await kv.put(key, "v")
    expected = sorted(keys, key=lambda k: k.encode("utf-8"))
    # U+E000 sorts before U+1F600 in UTF-8 but after it in UTF-16 (JavaScript's order).
    assert expected.index("\ue000") < expected.index("\U0001f600")
    assert await names(kv) == expected
    assert await names(kv, limit=3) == expected


@pytest.mark.parametrize(
    ("prefix", "expected"),
    [
        ("a%", ["a%", "a%b"]),
        ("a_", ["a_b"]),
        ("a\\", ["a\\b"]),
        ("a", ["a", "a%", "a%b", "aXb", "a\\b", "a_b", "ab", "axb"]),
        ("A", ["A", "Ab"]),
        ("ax", ["axb"]),
        ("%", []),
        ("zz", []),
        ("", ["A", "Ab", "a", "a%", "a%b", "aXb", "a\\b", "a_b", "ab", "axb", "b"]),
    ],
)
async def test_prefix_is_literal_and_case_sensitive(
    kv: KVStore, prefix: str, expected: list[str]
) -> None:
    await put_all(kv, ["a", "a%", "a%b", "a_b", "a\\b", "axb", "aXb", "ab", "A", "Ab", "b"])
    assert expected == sorted(expected, key=lambda k: k.encode())
    assert await names(kv, prefix=prefix) == expected
    assert await names(kv, prefix=prefix, limit=1) == expected


async def test_non_ascii_prefixes(kv: KVStore) -> None:
    keys = ["é", "éa", "éz", "ê", "e", "\ud7ffx", "\ue000", "a\U0010ffff", "a\U0010ffffz", "b"]
    await put_all(kv, keys)
    assert await names(kv, prefix="é") == ["é", "éa", "éz"]
    assert await names(kv, prefix="\ud7ff") == ["\ud7ffx"]
    assert await names(kv, prefix="a\U0010ffff") == ["a\U0010ffff", "a\U0010ffffz"]
    assert await names(kv, prefix="\U0010ffff") == []


async def test_prefix_with_none_means_all(kv: KVStore) -> None:
    await put_all(kv, ["x", "y"])
    assert await names(kv, prefix=None) == ["x", "y"]


async def test_prefix_of_513_bytes_is_414(kv: KVStore) -> None:
    with kv_error(
        "KV GET failed: 414 UTF-8 encoded length of 513 exceeds key length limit of 512.", 414
    ):
        await kv.list(prefix="p" * 513)
    assert (await kv.list(prefix="p" * 512)).keys == []


async def test_pages_hold_exactly_limit_keys(kv: KVStore) -> None:
    keys = [f"k{i:03}" for i in range(25)]
    await put_all(kv, keys)
    first = await kv.list(limit=10)
    assert [i.name for i in first.keys] == keys[:10]
    assert not first.list_complete and first.cursor is not None
    second = await kv.list(limit=10, cursor=first.cursor)
    assert [i.name for i in second.keys] == keys[10:20]
    assert not second.list_complete and second.cursor is not None
    third = await kv.list(limit=10, cursor=second.cursor)
    assert [i.name for i in third.keys] == keys[20:]
    assert third.list_complete and third.cursor is None


async def test_last_full_page_is_complete(kv: KVStore) -> None:
    keys = [f"k{i:02}" for i in range(20)]
    await put_all(kv, keys)
    first = await kv.list(limit=10)
    second = await kv.list(limit=10, cursor=first.cursor)
    assert [i.name for i in second.keys] == keys[10:]
    assert second.list_complete and second.cursor is None
    exact = await kv.list(limit=20)
    assert len(exact.keys) == 20 and exact.list_complete and exact.cursor is None


async def test_cursor_with_prefix(kv: KVStore) -> None:
    await put_all(kv, [f"a{i}" for i in range(5)] + [f"b{i}" for i in range(5)] + ["c"])
    assert await names(kv, prefix="b", limit=2) == [f"b{i}" for i in range(5)]


async def test_keys_inserted_after_the_cursor_are_seen(kv: KVStore) -> None:
    await put_all(kv, ["b", "d", "f", "h"])
    first = await kv.list(limit=2)
    assert [i.name for i in first.keys] == ["b", "d"]
    await kv.put("a", "before the cursor")
    await kv.put("c", "before the cursor")
    await kv.put("e", "after the cursor")
    await kv.delete("f")
    rest = await kv.list(cursor=first.cursor)
    assert [i.name for i in rest.keys] == ["e", "h"]
    assert rest.list_complete


async def test_cursor_survives_deletion_of_its_key(kv: KVStore) -> None:
    await put_all(kv, ["a", "b", "c"])
    first = await kv.list(limit=2)
    await kv.delete("b")
    assert [i.name for i in (await kv.list(cursor=first.cursor)).keys] == ["c"]


async def test_expired_keys_never_listed_and_pages_stay_full(kv: KVStore, clock: FakeClock) -> None:
    live = []
    for i in range(30):
        key = f"k{i:02}"
        if i % 3:
            await kv.put(key, "v", expiration_ttl=60)
        else:
            await kv.put(key, "v")
            live.append(key)
    clock.advance(60)
    assert await names(kv, limit=3) == live
    first = await kv.list(limit=4)
    assert [i.name for i in first.keys] == live[:4]


async def test_key_expiring_between_pages_is_not_listed(kv: KVStore, clock: FakeClock) -> None:
    await kv.put("a", "v")
    await kv.put("b", "v")
    await kv.put("c", "v", expiration_ttl=60)
    await kv.put("d", "v")
    first = await kv.list(limit=2)
    clock.advance(60)
    assert [i.name for i in (await kv.list(cursor=first.cursor)).keys] == ["d"]


async def test_keyinfo_fields_only_when_set(kv: KVStore, clock: FakeClock) -> None:
    await kv.put("plain", "v")
    await kv.put("ttl", "v", expiration_ttl=100)
    await kv.put("abs", "v", expiration=clock.whole + 500)
    await kv.put("meta", "v", metadata={"a": [1, "é"]})
    await kv.put("both", "v", expiration_ttl=70, metadata="m")
    page = await kv.list()
    assert page.keys == [
        KeyInfo("abs", clock.whole + 500, None),
        KeyInfo("both", clock.whole + 70, "m"),
        KeyInfo("meta", None, {"a": [1, "é"]}),
        KeyInfo("plain", None, None),
        KeyInfo("ttl", clock.whole + 100, None),
    ]
    assert [info.as_dict() for info in page.keys] == [
        {"name": "abs", "expiration": clock.whole + 500},
        {"name": "both", "expiration": clock.whole + 70, "metadata": "m"},
        {"name": "meta", "metadata": {"a": [1, "é"]}},
        {"name": "plain"},
        {"name": "ttl", "expiration": clock.whole + 100},
    ]


async def test_limit_over_1000_is_refused(kv: KVStore) -> None:
    for limit in (1001, 5000):
        with kv_error(
            f"KV GET failed: 400 Invalid key_count_limit of {limit}. "
            "Please specify an integer less than 1000.",
            400,
        ):
            await kv.list(limit=limit)


async def test_many_keys_page_fully_and_limit_defaults(kv: KVStore) -> None:
    keys = [f"key:{i:05}" for i in range(2500)]
    await put_all(kv, keys[:1250])
    await put_all(kv, keys[1250:])
    pages = []
    cursor = None
    while True:
        page = await kv.list(cursor=cursor)
        pages.append(page)
        if page.list_complete:
            break
        cursor = page.cursor
    assert [len(p.keys) for p in pages] == [1000, 1000, 500]
    assert [info.name for p in pages for info in p.keys] == keys
    for limit in (0, -1, -1000, None, float("nan")):
        page = await kv.list(limit=limit)  # type: ignore[arg-type]
        assert len(page.keys) == 1000 and not page.list_complete
        assert [i.name for i in page.keys] == keys[:1000]
    page = await kv.list(limit=1000, prefix="key:02")
    assert [i.name for i in page.keys] == keys[2000:]
    assert page.list_complete


@pytest.mark.parametrize("cursor", ["!!!", "abc", "not base64 at all", "/w==", "é"])
async def test_malformed_cursor_is_validation_error(kv: KVStore, cursor: str) -> None:
    with pytest.raises(KVValidationError) as info:
        await kv.list(cursor=cursor)
    assert info.value.status == 400


async def test_empty_cursor_means_first_page(kv: KVStore) -> None:
    await put_all(kv, ["a", "b"])
    assert [i.name for i in (await kv.list(cursor="")).keys] == ["a", "b"]


@pytest.mark.parametrize("limit", [[1], True, object()])
async def test_limit_of_wrong_type(kv: KVStore, limit: object) -> None:
    with pytest.raises(TypeError, match="limit"):
        await kv.list(limit=limit)  # type: ignore[arg-type]


async def test_limit_is_coerced_like_the_binding(kv: KVStore) -> None:
    await put_all(kv, ["a", "b", "c"])
    assert [i.name for i in (await kv.list(limit=2.9)).keys] == ["a", "b"]  # type: ignore[arg-type]
    assert [i.name for i in (await kv.list(limit="1")).keys] == ["a"]  # type: ignore[arg-type]
    assert len((await kv.list(limit="ten")).keys) == 3  # type: ignore[arg-type]
