"""Expiry (spec 3.2 put rows, checklist items 3-4, 7): validation, precedence, invisibility.

Time moves only through the fake clock; a key expires when its expiration <= now.
"""

from __future__ import annotations

from contextlib import AbstractContextManager as ContextManager

import pytest

from backends import FakeClock, fresh_key, kv_error
from kvcache import KVEntry, KVStore, KVValidationError

TTL_NOT_POSITIVE = "Invalid expiration_ttl of {}. Please specify integer greater than 0."
TTL_TOO_SHORT = "Invalid expiration_ttl of {}. Expiration TTL must be at least 60."
EXP_NOT_FUTURE = (
    "Invalid expiration of {}. Please specify integer greater than "
    "the current number of seconds since the UNIX epoch."
)
EXP_TOO_SOON = (
    "Invalid expiration of {}. Expiration times must be at least 60 seconds in the future."
)


def put_error(message: str) -> ContextManager[pytest.ExceptionInfo[KVValidationError]]:
    return kv_error(f"KV PUT failed: 400 {message}", 400)


@pytest.mark.parametrize(
    ("ttl", "shown"), [(0, 0), (-1, -1), (-3600, -3600), ("nan", 0), (float("nan"), 0), (0.9, 0)]
)
async def test_ttl_not_positive(kv: KVStore, ttl: object, shown: int) -> None:
    with put_error(TTL_NOT_POSITIVE.format(shown)):
        await kv.put(fresh_key(), "v", expiration_ttl=ttl)  # type: ignore[arg-type]


@pytest.mark.parametrize(("ttl", "shown"), [(1, 1), (30, 30), (59, 59), (59.9, 59), ("30", 30)])
async def test_ttl_below_60(kv: KVStore, ttl: object, shown: int) -> None:
    key = fresh_key()
    with put_error(TTL_TOO_SHORT.format(shown)):
        await kv.put(key, "v", expiration_ttl=ttl)  # type: ignore[arg-type]
    assert await kv.get(key) is None


async def test_ttl_of_60_sets_whole_second_expiry(kv: KVStore, clock: FakeClock) -> None:
    key = fresh_key()
    await kv.put(key, "v", expiration_ttl=60)
    [info] = (await kv.list()).keys
    assert info.expiration == clock.whole + 60
    assert isinstance(info.expiration, int)


async def test_expiration_not_in_future(kv: KVStore, clock: FakeClock) -> None:
    for at in (clock.whole, clock.whole - 1, 0, -5):
        with put_error(EXP_NOT_FUTURE.format(at)):
            await kv.put(fresh_key(), "v", expiration=at)


async def test_expiration_less_than_60_seconds_ahead(kv: KVStore, clock: FakeClock) -> None:
    for at in (clock.whole + 1, clock.whole + 30, clock.whole + 59):
        with put_error(EXP_TOO_SOON.format(at)):
            await kv.put(fresh_key(), "v", expiration=at)


async def test_expiration_60_seconds_ahead_is_accepted(kv: KVStore, clock: FakeClock) -> None:
    key = fresh_key()
    await kv.put(key, "v", expiration=clock.whole + 60)
    [info] = (await kv.list()).keys
    assert info.expiration == clock.whole + 60


async def test_ttl_wins_over_expiration(kv: KVStore, clock: FakeClock) -> None:
    key = fresh_key()
    await kv.put(key, "v", expiration=clock.whole + 100_000, expiration_ttl=120)
    [info] = (await kv.list()).keys
    assert info.expiration == clock.whole + 120


async def test_ttl_wins_so_a_bad_expiration_is_ignored(kv: KVStore, clock: FakeClock) -> None:
    key = fresh_key()
    await kv.put(key, "v", expiration=clock.whole - 10, expiration_ttl=60)
    assert await kv.get(key) == "v"


async def test_bad_ttl_reported_even_with_good_expiration(kv: KVStore, clock: FakeClock) -> None:
    with put_error(TTL_TOO_SHORT.format(10)):
        await kv.put(fresh_key(), "v", expiration=clock.whole + 600, expiration_ttl=10)


async def test_ttl_checked_before_metadata_and_value(kv: KVStore) -> None:
    with put_error(TTL_TOO_SHORT.format(5)):
        await kv.put(fresh_key(), b"x" * 26_214_401, expiration_ttl=5, metadata="m" * 2000)


async def test_expiration_checked_before_metadata(kv: KVStore, clock: FakeClock) -> None:
    with put_error(EXP_TOO_SOON.format(clock.whole + 5)):
        await kv.put(fresh_key(), "v", expiration=clock.whole + 5, metadata="m" * 2000)


@pytest.mark.parametrize("op", ["ttl", "expiration"])
async def test_expired_key_is_never_returned(kv: KVStore, clock: FakeClock, op: str) -> None:
    key, other = fresh_key("a"), fresh_key("b")
    if op == "ttl":
        await kv.put(key, "v", expiration_ttl=60, metadata={"m": 1})
    else:
        await kv.put(key, "v", expiration=clock.whole + 60, metadata={"m": 1})
    await kv.put(other, "stays")
    expires = clock.whole + 60

    clock.now = expires - 0.001
    assert await kv.get(key) == "v"
    assert [info.name for info in (await kv.list()).keys] == [key, other]

    clock.now = expires
    assert await kv.get(key) is None
    assert await kv.get(key, "bytes") is None
    assert await kv.get_with_metadata(key) == KVEntry(None, None)
    assert await kv.get_many([key, other]) == {key: None, other: "stays"}
    assert await kv.get_many_with_metadata([key]) == {key: None}
    assert [info.name for info in (await kv.list()).keys] == [other]
    assert (await kv.list(prefix=key)).keys == []

    clock.advance(10_000)
    assert await kv.get(key) is None
    assert await kv.get(other) == "stays"


async def test_rewrite_after_expiry_is_a_fresh_key(kv: KVStore, clock: FakeClock) -> None:
    key = fresh_key()
    await kv.put(key, "old", expiration_ttl=60, metadata="old")
    clock.advance(61)
    await kv.put(key, "new")
    assert await kv.get_with_metadata(key) == KVEntry("new", None)
    [info] = (await kv.list()).keys
    assert info.expiration is None


async def test_expired_key_can_be_deleted(kv: KVStore, clock: FakeClock) -> None:
    key = fresh_key()
    await kv.put(key, "v", expiration_ttl=60)
    clock.advance(120)
    await kv.delete(key)
    assert await kv.get(key) is None


async def test_ttl_counts_from_the_current_second(kv: KVStore, clock: FakeClock) -> None:
    clock.now = clock.whole + 0.999
    key = fresh_key()
    await kv.put(key, "v", expiration_ttl=60)
    [info] = (await kv.list()).keys
    assert info.expiration == clock.whole + 60


@pytest.mark.parametrize("field", ["expiration", "expiration_ttl"])
async def test_values_beyond_int32_are_out_of_range(kv: KVStore, field: str) -> None:
    with kv_error(
        "Value out of range. Must be between -2147483648 and 2147483647 (inclusive).", 400
    ):
        await kv.put(fresh_key(), "v", **{field: 2**31})


async def test_ttl_of_wrong_type(kv: KVStore) -> None:
    with pytest.raises(TypeError, match="expiration_ttl"):
        await kv.put(fresh_key(), "v", expiration_ttl=[60])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="expiration"):
        await kv.put(fresh_key(), "v", expiration=True)
