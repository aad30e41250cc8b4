"""Store conformance checks that run inside a Python Worker, on `WorkersKV(env.KV)`.

pytest does not run in Pyodide, so these are plain async functions over a store:
each raises AssertionError (or any error) when workerd's KV binding, seen through
`WorkersKV`, breaks a rule of the store contract. entry.py runs all of them on a
freshly emptied namespace each and answers {name: "ok" | the failure}; the pytest
side (tests/test_cloudflare_python_worker.py) fails on any that is not "ok".
"""

from __future__ import annotations

import base64
import json
import math
import traceback
from collections.abc import Awaitable, Callable
from typing import Any

import kvcache
from kvcache import Cache, Idempotency, KeyInfo, KVEntry, KVStore, KVValidationError

Check = Callable[[KVStore], Awaitable[None]]
CHECKS: dict[str, Check] = {}


def check(func: Check) -> Check:
    CHECKS[func.__name__] = func
    return func


async def refused(call: Awaitable[Any], text: str, status: int = 400) -> None:
    try:
        await call
    except KVValidationError as exc:
        assert text in str(exc), f"{text!r} not in {str(exc)!r}"
        assert exc.status == status, f"status {exc.status} != {status}"
        return
    raise AssertionError(f"no KVValidationError ({text!r})")


async def names(kv: KVStore, prefix: str | None = None, limit: int = 1000) -> list[str]:
    out: list[str] = []
    cursor = None
    while True:
        page = await kv.list(prefix=prefix, limit=limit, cursor=cursor)
        assert (page.cursor is None) == page.list_complete
        if not page.list_complete:
            assert len(page.keys) == limit, (len(page.keys), limit)
        out += [info.name for info in page.keys]
        if page.list_complete:
            return out
        cursor = page.cursor


@check
async def pure_python_json(kv: KVStore) -> None:
    from kvcache.kv import _json

    assert _json._decode is None, "msgspec should be absent in Pyodide"
    assert _json.loads('{"a": [1, 2.5]}') == {"a": [1, 2.5]}


@check
async def missing_key_reads_none(kv: KVStore) -> None:
    assert await kv.get("nope") is None
    assert await kv.get("nope", "bytes") is None
    assert await kv.get("nope", "json") is None
    assert await kv.get_with_metadata("nope") == KVEntry(None, None)


@check
async def text_and_bytes_round_trip(kv: KVStore) -> None:
    await kv.put("t", "héllo \U0001f600")
    assert await kv.get("t") == "héllo \U0001f600"
    assert await kv.get("t", "bytes") == "héllo \U0001f600".encode()
    data = bytes(range(256)) * 4
    await kv.put("b", data)
    assert await kv.get("b", "bytes") == data
    await kv.put("bad", b"ok\xff\xfe-\xc3")
    assert await kv.get("bad") == "ok\ufffd\ufffd-\ufffd"
    await kv.put("empty", "")
    assert await kv.get("empty") == "" and await kv.get("empty", "bytes") == b""


@check
async def json_type(kv: KVStore) -> None:
    await kv.put("j", '{"a": [1, 2.5, null, true], "b": "é"}')
    assert await kv.get("j", "json") == {"a": [1, 2.5, None, True], "b": "é"}
    await kv.put("n", "not json")
    await refused(kv.get("n", "json"), "not valid JSON")


@check
async def metadata_keeps_its_json_type(kv: KVStore) -> None:
    for index, meta in enumerate([0, False, "", [], {}, "text", 123, 1.5, True, {"a": [1, "é"]}]):
        key = f"m{index:02}"
        await kv.put(key, "v", metadata=meta)
        entry = await kv.get_with_metadata(key)
        assert entry.metadata == meta and type(entry.metadata) is type(meta), (meta, entry)
    listed = {info.name: info.metadata for info in (await kv.list()).keys}
    assert listed["m07"] == 1.5 and listed["m01"] is False and listed["m09"] == {"a": [1, "é"]}


@check
async def metadata_size_is_counted_as_compact_utf8(kv: KVStore) -> None:
    await kv.put("ok", "v", metadata={"k": "é" * 508})
    await refused(kv.put("big", "v", metadata={"k": "é" * 508 + "a"}), "1025", 413)
    assert await kv.get("big") is None


@check
async def put_replaces_value_metadata_and_expiry(kv: KVStore) -> None:
    await kv.put("k", "one", expiration_ttl=120, metadata={"v": 1})
    await kv.put("k", "two")
    assert await kv.get_with_metadata("k") == KVEntry("two", None)
    assert (await kv.list()).keys == [KeyInfo("k")]


@check
async def key_rules(kv: KVStore) -> None:
    await refused(kv.get(""), "Key name cannot be empty.")
    await refused(kv.put(".", "v"), '"." is not allowed as a key name.')
    await refused(kv.delete(".."), '".." is not allowed as a key name.')
    await refused(kv.put("k" * 513, "v"), "exceeds key length limit of 512", 414)
    odd = ["k" * 512, "é" * 256, " ", "a/b/c", "%", "?q=1&x#f", "line\nbreak", "\U0001f600", "42"]
    for key in odd:
        await kv.put(key, f"value of {key}")
        assert await kv.get(key) == f"value of {key}", key
    assert sorted(await names(kv)) == sorted(odd)


@check
async def expiry_is_counted_by_the_server(kv: KVStore) -> None:
    now = math.floor(kv.clock())
    await kv.put("ttl", "v", expiration_ttl=60)
    await kv.put("abs", "v", expiration=now + 600)
    got = {info.name: info.expiration for info in (await kv.list()).keys}
    assert got["abs"] == now + 600
    assert got["ttl"] is not None and abs(got["ttl"] - (now + 60)) <= 1, got
    await refused(kv.put("short", "v", expiration_ttl=30), "Expiration TTL must be at least 60.")


@check
async def list_order_prefix_and_full_pages(kv: KVStore) -> None:
    keys = ["b", "a", "Z", "~", "é", "\ue000", "\U0001f600", "aa", "a b", "0", "a%", "a_b"]
    await kv.put_many([{"key": key, "value": "v"} for key in keys])
    expected = sorted(keys, key=lambda k: k.encode("utf-8"))
    assert await names(kv) == expected
    assert await names(kv, limit=3) == expected
    assert await names(kv, prefix="a%") == ["a%"]
    assert await names(kv, prefix="a", limit=2) == ["a", "a b", "a%", "a_b", "aa"]


@check
async def cursor_resumes_after_its_last_key(kv: KVStore) -> None:
    await kv.put_many([{"key": key, "value": "v"} for key in "bdfh"])
    first = await kv.list(limit=2)
    assert [i.name for i in first.keys] == ["b", "d"]
    await kv.put("a", "before")
    await kv.put("e", "after")
    await kv.delete("f")
    rest = await kv.list(cursor=first.cursor)
    assert [i.name for i in rest.keys] == ["e", "h"] and rest.list_complete
    await refused(kv.list(cursor="not a cursor"), "Invalid cursor")


@check
async def get_many_in_request_order(kv: KVStore) -> None:
    await kv.put("a", "1", metadata={"m": "é"})
    await kv.put("c", '{"x": 3}')
    got = await kv.get_many(["c", "b", "a", "c"])
    assert got == {"c": '{"x": 3}', "b": None, "a": "1"} and list(got) == ["c", "b", "a"]
    assert await kv.get_many(["c"], "json") == {"c": {"x": 3}}
    with_meta = await kv.get_many_with_metadata(["a", "b"])
    assert with_meta == {"a": KVEntry("1", {"m": "é"}), "b": None}
    await kv.put("bin", b"\x00\xff")
    assert await kv.get_many(["bin", "b"], "bytes") == {"bin": b"\x00\xff", "b": None}
    await refused(kv.get_many([str(i) for i in range(101)]), "maximum of 100 keys")


@check
async def bulk_write_and_delete(kv: KVStore) -> None:
    await kv.put_many(
        [
            {"key": "k1", "value": "text"},
            {"key": "k2", "value": base64.b64encode(b"\x00\xffhi").decode(), "base64": True},
            {"key": "k3", "value": "v", "expiration_ttl": 3600, "metadata": {"tag": "x"}},
            {"key": "k1", "value": "later wins"},
        ]
    )
    assert await kv.get("k1") == "later wins"
    assert await kv.get("k2", "bytes") == b"\x00\xffhi"
    assert (await kv.get_with_metadata("k3")).metadata == {"tag": "x"}
    await kv.delete_many(["k1", "k3", "missing"])
    assert await names(kv) == ["k2"]
    await kv.delete("missing")


@check
async def binding_errors_are_typed(kv: KVStore) -> None:
    from kvcache.kv.workers import WorkersKV, map_js_error

    assert isinstance(kv, WorkersKV)
    try:
        await kv.binding.put("k", "v", kv._js_json('{"expirationTtl":30}'))
    except Exception as exc:
        mapped = map_js_error("PUT", exc)
        assert isinstance(mapped, KVValidationError), repr(mapped)
        assert "Expiration TTL must be at least 60" in str(mapped) and mapped.status == 400
    else:
        raise AssertionError("the binding accepted a 30 s TTL")
    try:
        await kv.binding.get("")
    except Exception as exc:
        mapped = map_js_error("GET", exc)
        assert isinstance(mapped, KVValidationError) and "empty" in str(mapped), repr(mapped)
    else:
        raise AssertionError("the binding accepted an empty key")


@check
async def best_effort_conditionals(kv: KVStore) -> None:
    assert kv.atomic is False and kv.consistent is False
    assert await kv.put_if_absent("lease", "a", expiration_ttl=60) is True
    assert await kv.put_if_absent("lease", "b") is False
    assert await kv.delete_if_equals("lease", "b") is False
    assert await kv.delete_if_equals("lease", "a") is True
    assert await kv.get("lease") is None


@check
async def cache_caches_a_customer_look_up(kv: KVStore) -> None:
    cache = Cache(kv, default_ttl=3600, prefix="app:")
    calls: list[str] = []

    async def find_customer() -> dict[str, Any] | None:
        calls.append("shopify")
        return {"id": "gid://shopify/Customer/1", "email": "a@b.c", "tags": []}

    key = "shop:s.myshopify.com:customer:email:a@b.c"
    first = await cache.get_or_set(key, find_customer, ttl=1800)
    second = await cache.get_or_set(key, find_customer, ttl=1800)
    assert first == second and first is not None and calls == ["shopify"]
    assert await cache.delete_prefix("shop:s.myshopify.com:") == 1
    assert await cache.get(key, default="gone") == "gone"


@check
async def idempotency_best_effort(kv: KVStore) -> None:
    try:
        Idempotency(kv)
    except kvcache.KVConfigError as exc:
        assert "best_effort=True" in str(exc)
    else:
        raise AssertionError("Idempotency accepted a non-atomic store without best_effort")
    idem = Idempotency(kv, best_effort=True, lease_ttl=60, result_ttl=3600)
    runs: list[int] = []

    async def handle() -> dict[str, int]:
        runs.append(1)
        return {"processed": len(runs)}

    first = await idem.run("webhook:abc", handle)
    again = await idem.run("webhook:abc", handle)
    assert not first.duplicate and again.duplicate and again.result == {"processed": 1}
    assert runs == [1]


#: Checks of docs/cloudflare.md's Worker example (shipped as the module `example`).
EXAMPLE_CHECKS = ["docs_example_customer_is_cached", "docs_example_webhook_runs_once"]


async def _example_customer(env: Any) -> None:
    import example  # type: ignore[import-not-found]  # the docs example, only in the Worker
    from js import Request

    calls: list[str] = []
    find = example.find_customer

    async def counted(email: str) -> Any:
        calls.append(email)
        return await find(email)

    example.find_customer = counted
    try:
        answers = []
        for _ in range(2):
            response = await example.on_fetch(Request.new("http://w/customer?email=a@b.c"), env)
            answers.append(json.loads(await response.text()))
    finally:
        example.find_customer = find
    assert answers[0] == answers[1] and answers[0]["email"] == "a@b.c", answers
    assert calls == ["a@b.c"], calls
    missing = await example.on_fetch(Request.new("http://w/elsewhere"), env)
    assert missing.status == 404


async def _example_webhook(env: Any) -> None:
    import example
    from js import Object, Request
    from pyodide.ffi import to_js

    init = {"method": "POST", "body": '{"id": 7}', "headers": {"X-Shopify-Webhook-Id": "w-1"}}
    answers = []
    for _ in range(2):
        request = Request.new("http://w/webhooks", to_js(init, dict_converter=Object.fromEntries))
        response = await example.on_fetch(request, env)
        answers.append(json.loads(await response.text()))
    assert answers == [
        {"duplicate": False, "processed": 7},
        {"duplicate": True, "processed": 7},
    ], answers


async def run_example(env: Any) -> dict[str, str]:
    results: dict[str, str] = {}
    for name, func in zip(EXAMPLE_CHECKS, (_example_customer, _example_webhook), strict=True):
        try:
            await func(env)
            results[name] = "ok"
        except Exception:
            results[name] = traceback.format_exc()
    return results


async def wipe(kv: KVStore) -> None:
    while True:
        page = await kv.list()
        if not page.keys:
            return
        await kv.delete_many([info.name for info in page.keys])


async def run_all(make: Callable[[], KVStore]) -> dict[str, str]:
    """Every check on a fresh, emptied store; "ok" or the failure's traceback."""
    results: dict[str, str] = {}
    for name, func in CHECKS.items():
        kv = make()
        try:
            await wipe(kv)
            await func(kv)
            results[name] = "ok"
        except Exception:
            results[name] = traceback.format_exc()
        finally:
            await kv.close()
    return results
