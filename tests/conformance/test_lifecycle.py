"""Opening, closing, namespaces and limit presets: the parts around the Workers KV calls."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest

import kvcache
from backends import FakeClock, StoreFactory, fresh_key, fresh_namespace, kv_error, require
from kvcache import KVBackendError, KVConfigError, KVStore, Limits


async def test_open_kv_is_awaitable(store_url: str, clock: FakeClock) -> None:
    kv = await kvcache.open_kv(store_url, namespace=fresh_namespace(), clock=clock)
    try:
        assert isinstance(kv, KVStore)
        await kv.put("k", "v")
        assert await kv.get("k") == "v"
    finally:
        await kv.close()


async def test_open_kv_as_async_with_closes(store_url: str, clock: FakeClock) -> None:
    async with kvcache.open_kv(store_url, namespace=fresh_namespace(), clock=clock) as kv:
        await kv.put("k", "v")
        assert await kv.get("k") == "v"
    with pytest.raises(KVBackendError):
        await kv.get("k")


async def test_store_as_async_context_manager(store_url: str) -> None:
    kv = await kvcache.open_kv(store_url, namespace=fresh_namespace())
    async with kv as same:
        assert same is kv
        await kv.put(fresh_key(), "v")
    with pytest.raises(KVBackendError):
        await kv.put(fresh_key(), "v")


async def test_closed_store_raises_backend_error(make_store: StoreFactory) -> None:
    kv = await make_store()
    await kv.put("k", "v")
    await kv.close()
    await kv.close()  # idempotent
    calls: list[Callable[[], Awaitable[object]]] = [
        lambda: kv.get("k"),
        lambda: kv.get_with_metadata("k"),
        lambda: kv.get_many(["k"]),
        lambda: kv.get_many_with_metadata(["k"]),
        lambda: kv.list(),
        lambda: kv.put("k", "v"),
        lambda: kv.delete("k"),
        lambda: kv.put_many([{"key": "k", "value": "v"}]),
        lambda: kv.delete_many(["k"]),
    ]
    if kv.atomic:
        calls += [lambda: kv.put_if_absent("n", "v"), lambda: kv.delete_if_equals("k", "v")]
    for call in calls:
        with pytest.raises(KVBackendError) as info:
            await call()
        assert info.value.backend == kv.backend


async def test_validation_runs_before_the_closed_check(make_store: StoreFactory) -> None:
    kv = await make_store()
    await kv.close()
    with kv_error("Key name cannot be empty.", 400):
        await kv.get("")


@pytest.mark.parametrize("url", ["nosuch://x", "memcached://localhost", "", "memory", "/a/path"])
async def test_unknown_url_scheme_is_config_error(url: str) -> None:
    with pytest.raises(KVConfigError, match="scheme") as info:
        await kvcache.open_kv(url)
    assert isinstance(info.value, ValueError)
    assert "sqlite" in str(info.value)


async def test_non_str_url_is_type_error() -> None:
    with pytest.raises(TypeError):
        await kvcache.open_kv(42)  # type: ignore[arg-type]


@pytest.mark.parametrize("namespace", ["", None, 5])
async def test_bad_namespace(store_url: str, namespace: object) -> None:
    with pytest.raises(TypeError, match="namespace"):
        await kvcache.open_kv(store_url, namespace=namespace)  # type: ignore[arg-type]


async def test_namespaces_are_isolated(make_store: StoreFactory) -> None:
    first = await make_store(namespace="app")
    require(first, "separate_namespaces")
    second = await make_store(namespace="app:other")
    third = await make_store(namespace="app:")
    await first.put("other:k", "first")
    await first.put("k", "first")
    await second.put("k", "second")
    await third.put("k", "third")
    assert await first.get("k") == "first"
    assert await second.get("k") == "second"
    assert await third.get("k") == "third"
    assert await second.get("other:k") is None
    assert [i.name for i in (await first.list()).keys] == ["k", "other:k"]
    assert [i.name for i in (await second.list()).keys] == ["k"]
    assert await second.get_many(["k", "other:k"]) == {"k": "second", "other:k": None}
    await second.delete_many(["k", "other:k"])
    await third.delete("k")
    assert await first.get("k") == "first"
    assert await first.get("other:k") == "first"
    if first.atomic:
        assert await second.put_if_absent("k", "again") is True
        assert await first.delete_if_equals("k", "again") is False


async def test_stores_on_one_url_share_a_namespace(make_store: StoreFactory) -> None:
    first = await make_store(namespace="same")
    second = await make_store(namespace="same")
    await first.put("k", "v", metadata=[1])
    require(first, "consistent")  # the second store reads right after the first wrote
    if not make_store.shared:  # each store on this URL is private
        assert await second.get("k") is None
        assert (await second.list()).keys == []
        return
    assert await second.get_with_metadata("k") == kvcache.KVEntry("v", [1])
    await second.delete("k")
    assert await first.get("k") is None


async def test_default_limits_are_cloudflare(kv: KVStore) -> None:
    assert kv.limits == Limits.cloudflare()


async def test_relaxed_limits_lift_minimums_and_sizes(
    make_store: StoreFactory, clock: FakeClock
) -> None:
    require(await make_store(), "relaxable")
    kv = await make_store(limits=Limits.relaxed())
    assert kv.limits == Limits.relaxed()
    # The short TTLs first: Redis expires them in real time too, and moving 25 MiB on a
    # loaded machine can take longer than they live.
    await kv.put("short", "v", expiration_ttl=1)
    await kv.put("soon", "v", expiration=clock.whole + 2)
    assert await kv.get("short", cache_ttl=1) == "v"
    clock.advance(1)
    assert await kv.get("short") is None
    assert await kv.get("soon") == "v"
    clock.advance(1)
    assert await kv.get("soon") is None
    await kv.put("k" * 600, "v", metadata="m" * 5000)
    await kv.put("big", b"x" * 26_214_401)
    assert len(await kv.get("big", "bytes")) == 26_214_401
    assert (await kv.get_with_metadata("k" * 600)).metadata == "m" * 5000


async def test_relaxed_limits_keep_the_rules(make_store: StoreFactory, clock: FakeClock) -> None:
    require(await make_store(), "relaxable")
    kv = await make_store(limits=Limits.relaxed())
    with kv_error(
        "KV PUT failed: 400 Invalid expiration_ttl of 0. Please specify integer greater than 0.",
        400,
    ):
        await kv.put("k", "v", expiration_ttl=0)
    with kv_error(
        f"KV PUT failed: 400 Invalid expiration of {clock.whole}. Please specify integer greater "
        "than the current number of seconds since the UNIX epoch.",
        400,
    ):
        await kv.put("k", "v", expiration=clock.whole)
    with kv_error("Key name cannot be empty.", 400):
        await kv.put("", "v")
    with kv_error('"." is not allowed as a key name.', 400):
        await kv.put(".", "v")
    with kv_error(
        "KV GET failed: 400 Invalid key_count_limit of 1001. "
        "Please specify an integer less than 1000.",
        400,
    ):
        await kv.list(limit=1001)
    with kv_error("KV GET_BULK failed: 400 You can request a maximum of 100 keys", 400):
        await kv.get_many([str(i) for i in range(101)])
    await kv.put("b", "1", expiration_ttl=5, metadata="m")
    await kv.put("b", "2")
    await kv.put("a", "3", expiration=clock.whole + 100, expiration_ttl=10)
    await kv.put("\U0001f600", "4")
    await kv.put("\ue000", "5")
    page = await kv.list(limit=2)
    assert [i.name for i in page.keys] == ["a", "b"] and not page.list_complete
    assert page.keys[0].expiration == clock.whole + 10
    assert page.keys[1] == kvcache.KeyInfo("b")
    rest = await kv.list(cursor=page.cursor)
    assert [i.name for i in rest.keys] == ["\ue000", "\U0001f600"]


async def test_repr_names_the_namespace(kv: KVStore) -> None:
    assert kv.namespace in repr(kv)
    assert kv.backend != "abstract"


async def test_a_store_that_cannot_relax_refuses_relaxed_limits(make_store: StoreFactory) -> None:
    kv = await make_store()
    if kv.relaxable:
        pytest.skip(f"{type(kv).__name__} applies Limits.relaxed()")
    with pytest.raises(KVConfigError, match="min_expiration_ttl"):
        await make_store(limits=Limits.relaxed())
