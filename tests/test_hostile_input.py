"""The hostile inputs of issue 7, one test each, with the decisions of docs/errors.md.

The fuzz suite (tests/fuzz/) searches for new ones; these pin the known ones
down with exact errors and show each decision on every backend.
"""

from __future__ import annotations

import itertools
import re
import sqlite3
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

import kvcache
from backends import FakeClock, StoreFactory, fresh_key
from kvcache import (
    Cache,
    Idempotency,
    KVConfigError,
    KVStore,
    KVValidationError,
    Limits,
)
from kvcache.kv._json import dumps, dumps_readable, loads
from kvcache.serializers import JSON

T = TypeVar("T")
HUGE = 10**400
OUT_OF_RANGE = "Value out of range. Must be between -2147483648 and 2147483647 (inclusive)."


def nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


def frames_left(margin: int) -> int:
    """How many more frames fit on this thread's stack, keeping `margin` spare."""
    frame, depth = sys._getframe(), 0
    while frame is not None:
        frame, depth = frame.f_back, depth + 1  # type: ignore[assignment]
    return sys.getrecursionlimit() - depth - margin


def on_deep_stack(depth: int, work: Callable[[], Any]) -> Any:
    """`work()` called with `depth` more frames on the stack."""
    return work() if depth <= 0 else on_deep_stack(depth - 1, work)


async def awaited_deep(depth: int, work: Callable[[], Awaitable[T]]) -> T:
    """`await work()` run with `depth` more (coroutine) frames on the stack."""
    return await work() if depth <= 0 else await awaited_deep(depth - 1, work)


@pytest.mark.parametrize(
    "options",
    [{"expiration_ttl": HUGE}, {"expiration": HUGE}, {"expiration_ttl": -HUGE}],
    ids=["ttl", "expiration", "negative ttl"],
)
async def test_ints_beyond_float_range_are_out_of_range(kv: KVStore, options: Any) -> None:
    with pytest.raises(KVValidationError, match="Value out of range"):
        await kv.put("k", "v", **options)
    with pytest.raises(KVValidationError, match="Value out of range"):
        await kv.put_many([{"key": "k", "value": "v", **options}])
    with pytest.raises(KVValidationError, match="Value out of range"):
        await kv.list(limit=HUGE)
    with pytest.raises(KVValidationError, match="Value out of range"):
        await kv.get("k", cache_ttl=HUGE)
    assert (await kv.list()).keys == []


@pytest.mark.parametrize(
    ("text", "accepted"),
    [
        ("0x40", True),
        (" 61 ", True),
        ("1_000", False),
        ("\u0666\u0660", False),
        ("Infinity", False),
    ],
)
async def test_numeric_strings_are_read_as_javascript_reads_them(
    kv: KVStore, text: str, accepted: bool
) -> None:
    if accepted:
        await kv.put("k", "v", expiration_ttl=text)  # type: ignore[arg-type]
        assert (await kv.list()).keys[0].expiration is not None
    else:  # Number() gives NaN or Infinity: 0, as the binding converts it
        with pytest.raises(KVValidationError, match="Invalid expiration_ttl of 0"):
            await kv.put("k", "v", expiration_ttl=text)  # type: ignore[arg-type]


async def fetch_one() -> int:
    return 1


async def test_cache_and_idempotency_ttls_beyond_float_range(kv: KVStore) -> None:
    options: dict[str, Any]
    for name in ("default_ttl", "local_ttl", "lock_timeout", "jitter"):
        options = {name: HUGE}
        with pytest.raises(KVValidationError, match=name):
            Cache(kv, **options)
    cache = Cache(kv)
    with pytest.raises(KVValidationError, match="Invalid ttl: it must be at most 2147483647"):
        await cache.set("k", 1, ttl=HUGE)
    with pytest.raises(KVValidationError, match="stale_ttl"):
        await cache.get_or_set("k", fetch_one, ttl=2**31 - 1, stale_ttl=10)
    with pytest.raises(KVConfigError, match="lease_ttl must be from 1 to 2147483647"):
        Idempotency(kv, lease_ttl=HUGE)
    with pytest.raises(KVConfigError, match="result_ttl"):
        Idempotency(kv, result_ttl=-HUGE)


async def test_deep_metadata_is_refused_when_written(make_store: StoreFactory) -> None:
    kv = await make_store(limits=Limits.relaxed())  # room for 1 MiB of metadata
    for depth in (3000, 100_000):
        with pytest.raises(TypeError, match="metadata is not JSON-serialisable: it is nested"):
            await kv.put("k", "v", metadata=nested(depth))
    assert await kv.get("k") is None


async def test_metadata_a_store_wrote_reads_back_from_any_stack_depth(kv: KVStore) -> None:
    metadata = nested(500)  # 1,001 bytes: within Workers KV's 1,024
    await kv.put("k", "v", metadata=metadata)
    entry = await awaited_deep(frames_left(120), lambda: kv.get_with_metadata("k"))
    assert dumps(entry.metadata) == dumps(metadata)
    page = await awaited_deep(frames_left(120), lambda: kv.list())
    assert dumps(page.keys[0].metadata) == dumps(metadata)


async def test_deep_json_values_are_a_json_error_not_a_recursion_error(kv: KVStore) -> None:
    await kv.put("deep", "[" * 100_000 + "]" * 100_000)
    with pytest.raises(KVValidationError, match="Value is not valid JSON: nested too deeply"):
        await kv.get("deep", type="json")
    with pytest.raises(KVValidationError, match="non-json value"):
        await kv.get_many(["deep"], type="json")
    assert (await kv.get_with_metadata("deep", "bytes")).value.startswith(b"[[")


def test_what_dumps_writes_loads_reads_from_a_deep_stack() -> None:
    """The deepest document the encoder manages is still read by a caller near the limit."""
    deepest = 0
    for depth in itertools.count(900):
        try:
            text = dumps(nested(depth))
        except TypeError:
            break
        deepest = depth
    text = dumps(nested(deepest))
    assert dumps(on_deep_stack(frames_left(30), lambda: loads(text))) == text
    assert dumps_readable(nested(deepest), "value") == text
    with pytest.raises(ValueError, match="nested too deeply"):
        loads("[" * 5000 + "]" * 5000)


async def test_foreign_deep_metadata_in_a_sqlite_file_is_a_validation_error(
    tmp_path: Path, clock: FakeClock
) -> None:
    path = tmp_path / "kv.sqlite3"
    async with kvcache.open_kv(f"sqlite:///{path}", clock=clock) as kv:
        await kv.put("k", "v", metadata={"ok": True})
        with sqlite3.connect(path) as conn:
            conn.execute("UPDATE kv SET metadata = ?", ("[" * 5000 + "]" * 5000,))
        with pytest.raises(KVValidationError, match="Metadata of key 'k' is not valid JSON"):
            await kv.get_with_metadata("k")
        with pytest.raises(KVValidationError, match="Metadata of key 'k'"):
            await kv.list()
        assert await kv.get("k") == "v"


@pytest.mark.parametrize("local", [None, 60.0])
async def test_a_deep_cache_entry_is_a_counted_miss_that_the_next_fill_overwrites(
    kv: KVStore, local: float | None
) -> None:
    cache = Cache(kv, local_ttl=local)
    await kv.put("customer:1", "|" + "[" * 5000 + "]" * 5000)
    assert await cache.get("customer:1", "miss") == "miss"
    assert (cache.stats().misses, cache.stats().errors) == (1, 1)

    async def fetch() -> dict[str, int]:
        return {"id": 1}

    assert await cache.get_or_set("customer:1", fetch) == {"id": 1}
    assert await kv.get("customer:1") == '|{"id":1}'
    assert await cache.get("customer:1") == {"id": 1}


@pytest.mark.parametrize(
    "url",
    ["redis://[::1:6379/0", "sqlite://[x/kv.db", "redis://h:abc/0", "redis://h:99999/0"],
)
async def test_malformed_urls_are_config_errors_naming_the_url(url: str) -> None:
    with pytest.raises(KVConfigError, match="malformed store URL"):
        await kvcache.open_kv(url)


async def test_a_malformed_url_hides_its_password() -> None:
    with pytest.raises(KVConfigError) as info:
        await kvcache.open_kv("redis://user:hunter2@[::1:6379/0")
    assert "hunter2" not in str(info.value)
    assert "user:***@" in str(info.value)


@pytest.mark.parametrize("query", ["decode_responses=1", "retry=3", "encoding=latin-1", "nope=1"])
async def test_redis_url_options_that_would_break_the_store_are_refused(
    redis_url: str, query: str
) -> None:
    with pytest.raises(KVConfigError, match=query.split("=")[0]):
        await kvcache.open_kv(f"{redis_url}?{query}")


async def test_bulk_calls_take_any_iterable_and_refuse_what_is_not_one(kv: KVStore) -> None:
    await kv.put_many({"key": f"g{i}", "value": str(i)} for i in range(3))
    assert await kv.get_many(f"g{i}" for i in range(3)) == {"g0": "0", "g1": "1", "g2": "2"}
    await kv.delete_many(key for key in ["g0", "g1"])
    assert await kv.get_many(("g0", "g2")) == {"g0": None, "g2": "2"}
    calls: list[tuple[Callable[[Any], Awaitable[Any]], str]] = [
        (kv.get_many, "get_many"),
        (kv.delete_many, "delete_many"),
    ]
    for call, name in calls:
        with pytest.raises(TypeError, match=rf"{name}\(\) takes an iterable of keys, not int"):
            await call(5)
    with pytest.raises(TypeError, match=r"put_many\(\) takes an iterable of entries, not a single"):
        await kv.put_many({"key": "k", "value": "v"})


async def test_an_endless_generator_is_refused_without_reading_it_all(kv: KVStore) -> None:
    with pytest.raises(KVValidationError, match="maximum of 100 keys"):
        await kv.get_many(f"k{i}" for i in itertools.count())
    with pytest.raises(KVValidationError, match="got more than 10000"):
        await kv.delete_many(f"k{i}" for i in itertools.count())


async def test_a_str_value_with_a_lone_surrogate_is_refused(kv: KVStore) -> None:
    message = "Value is not valid Unicode: a lone surrogate U+D800 at index 1"
    with pytest.raises(KVValidationError, match=re.escape(message)) as info:
        await kv.put("k", "a\ud800b")
    assert info.value.status == 400
    with pytest.raises(KVValidationError, match="lone surrogate"):
        await kv.put_many([{"key": "k", "value": "\udfff"}])
    with pytest.raises(KVValidationError, match="lone surrogate"):
        await kv.put_if_absent("k", "\udc80")
    assert await kv.get("k") is None
    await kv.put("k", "a\ud800b".encode("utf-8", "surrogatepass"))  # bytes: stored as given
    assert await kv.get("k", "bytes") == b"a\xed\xa0\x80b"


async def test_cache_values_with_lone_surrogates_round_trip_exactly(kv: KVStore) -> None:
    cache = Cache(kv)
    await cache.set("k", {"name": "a\ud800b", "\udfff": 1})
    assert await cache.get("k") == {"name": "a\ud800b", "\udfff": 1}
    assert await kv.get("k") == '|{"name":"a\\ud800b","\\udfff":1}'


async def test_idempotency_handlers_that_are_not_async_functions(kv: KVStore) -> None:
    idem = Idempotency(kv)
    with pytest.raises(TypeError, match="handler must be an async callable, not int"):
        await idem.run("k", 5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="handler must be an async function; it returned str"):
        await idem.run("k", lambda: "sync")  # type: ignore[arg-type,return-value]
    assert await kv.get("idem:k") is None  # the claim was released


@pytest.mark.parametrize(
    ("template", "args"),
    [("{a.missing}", (1,)), ("{a[0]}", (1,)), ("{a:d}", ("s",)), ("{a!z}", (1,))],
)
async def test_decorator_keys_that_cannot_be_made_name_the_template(
    kv: KVStore, template: str, args: tuple[Any, ...]
) -> None:
    cache = Cache(kv)

    @cache.cached(template)
    async def find(a: Any) -> str:
        return "found"

    with pytest.raises(TypeError, match="cannot make a key from template"):
        await find(*args)
    with pytest.raises(ValueError, match="is not a format string"):
        cache.cached("{")


def test_limits_and_store_options_of_the_wrong_type() -> None:
    with pytest.raises(TypeError, match="Limits.max_key_bytes must be an int, not str"):
        Limits(max_key_bytes="512")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="Limits.min_cache_ttl must be at least 0"):
        Limits(min_cache_ttl=-1)


async def test_open_kv_options_of_the_wrong_type() -> None:
    with pytest.raises(TypeError, match="limits must be a kvcache.Limits, not dict"):
        await kvcache.open_kv("memory://", limits={})  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="clock must be callable, not int"):
        await kvcache.open_kv("memory://", clock=5)  # type: ignore[arg-type]


async def test_key_types_and_wording_per_surface(kv: KVStore) -> None:
    with pytest.raises(TypeError, match=r"KV get\(\) key must be str, not int"):
        await kv.get(5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"KV get\(\) prefix must be str, not int"):
        await kv.list(prefix=5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match='type must be "text", "json" or "bytes", not list'):
        await kv.get(fresh_key(), type=[])  # type: ignore[arg-type]
    with pytest.raises(KVValidationError, match="Prefix is not valid Unicode"):
        await kv.list(prefix="\ud800")


class Fussy:
    """A serializer whose loads fails with whatever its format's library raises."""

    binary = False

    def dumps(self, value: Any) -> str:
        return JSON.dumps(value)

    def loads(self, data: Any) -> Any:
        if data.startswith("{"):
            raise KeyError("a field this format needs")
        return JSON.loads(data)


async def test_whatever_a_serializer_raises_on_an_entry_is_a_counted_miss(kv: KVStore) -> None:
    cache = Cache(kv, serializer=Fussy())
    await kv.put("k", '|{"old":1}')
    assert await cache.get("k", "miss") == "miss"
    assert cache.stats().errors == 1
    assert await cache.get_or_set("k", fetch_one) == 1
    assert await cache.get("k") == 1


async def test_a_cluster_url_without_a_host_is_a_config_error() -> None:
    with pytest.raises(KVConfigError, match="at least one node"):
        await kvcache.open_kv("redis+cluster://")


async def test_an_int_too_long_to_print_is_shown_by_its_size(kv: KVStore) -> None:
    with pytest.raises(ValueError, match=r"not -<an int of \d+ bits>"):
        Limits(max_key_bytes=-(10**5000))
    with pytest.raises(KVValidationError, match=r"Invalid local_maxsize of -<an int of"):
        Cache(kv, local_maxsize=-(10**5000))


async def test_a_bad_sqlite_option_hides_the_password() -> None:
    with pytest.raises(KVConfigError) as info:
        await kvcache.open_kv("sqlite://u:hunter2@h/?busy_timeout=x")
    assert "hunter2" not in str(info.value)
