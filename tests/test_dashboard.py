"""The dashboard over plain HTTP: its login, the admin rule, its data endpoint, the replay route.

A real uvicorn on a loopback port (tests/service.py) driven by httpx; the charts'
arithmetic is checked on its own against hand-made history points, and the history
writers (`Metrics` with a `History`) on a real app database with a fake clock.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from backends import FakeClock
from kvcache import Cache, CacheStats, open_kv
from kvcache.app.access import COOKIE, session_value
from kvcache.app.dashboard_data import SharedAnswers, hit_rates, ops_rates, webhook_counts
from kvcache.app.metrics import Metrics
from kvcache.shopify.db import migrate, open_database
from kvcache.shopify.history import History, Point, labels_key
from kvcache.testing import ShopifyAdminEmulator
from redis_server import RedisServer
from service import Server, running, settings_for, signed_headers
from webhook_handlers import DIR_ENV, read_runs

TOKEN = "s3cret-dashboard"
SHOP = "demo.myshopify.com"
REMOTE = {"X-Forwarded-For": "203.0.113.5"}  # uvicorn trusts it from 127.0.0.1 (a proxy)


@pytest.fixture
def guarded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Server]:
    monkeypatch.setenv(DIR_ENV, str(tmp_path))
    settings = settings_for(tmp_path, admin_token=TOKEN, handlers=("webhook_handlers",))
    with running(settings) as server:
        yield server


def test_without_credentials_the_page_is_a_login_form(guarded: Server) -> None:
    with httpx.Client(base_url=guarded.url) as client:
        page = client.get("/dashboard")
        assert page.status_code == 401 and page.headers["content-type"].startswith("text/html")
        assert '<form method="post" action="/dashboard/login">' in page.text
        assert 'name="token"' in page.text and "data-metric" not in page.text
        assert "default-src 'none'" in page.headers["content-security-policy"]
        for path in ("/api/dashboard", "/api/cache/stats"):
            assert client.get(path).status_code == 401
        assert client.post("/api/webhooks/replay", json={"webhookId": "x"}).status_code == 401


def test_a_wrong_token_is_refused(guarded: Server) -> None:
    with httpx.Client(base_url=guarded.url) as client:
        for token in ("nope", "", TOKEN + "x", TOKEN[:-1]):
            wrong = client.post("/dashboard/login", data={"token": token})
            assert wrong.status_code == 401 and "Wrong token." in wrong.text
            assert "set-cookie" not in wrong.headers
        bearer = client.get("/api/dashboard", headers={"Authorization": "Bearer nope"})
        assert bearer.status_code == 401
        too_big = client.post("/dashboard/login", content=b"token=" + b"x" * 5000)
        assert too_big.status_code == 413


def test_the_login_sets_a_strict_httponly_cookie_that_opens_the_admin_routes(
    guarded: Server,
) -> None:
    with httpx.Client(base_url=guarded.url) as client:
        login = client.post("/dashboard/login", data={"token": TOKEN})
        assert login.status_code == 303 and login.headers["location"] == "/dashboard"
        cookie = login.headers["set-cookie"]
        assert cookie.startswith(f"{COOKIE}={session_value(TOKEN)};")
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie and TOKEN not in cookie
        page = client.get("/dashboard")  # the client keeps the cookie
        assert page.status_code == 200
        for metric in ("hits", "misses", "sets", "deletes", "errors", "hitRate"):
            assert f'data-metric="{metric}"' in page.text
        assert "https://" not in page.text and "http://" not in page.text
        assert client.get("/api/dashboard").status_code == 200
        assert client.get("/api/cache/stats").status_code == 200
        logout = client.post("/dashboard/logout")
        assert logout.status_code == 303 and f'{COOKIE}="";' in logout.headers["set-cookie"]
        assert client.get("/dashboard").status_code == 401
    forged = {COOKIE: session_value("another token")}
    with httpx.Client(base_url=guarded.url, cookies=forged) as client:
        assert client.get("/dashboard").status_code == 401
        assert client.get("/api/dashboard").status_code == 401
    with httpx.Client(base_url=guarded.url, cookies={COOKIE: TOKEN}) as client:
        assert client.get("/api/dashboard").status_code == 401  # the token itself is no cookie
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    with httpx.Client(base_url=guarded.url, headers=bearer) as client:
        assert client.get("/dashboard").status_code == 200
        assert client.get("/api/dashboard").status_code == 200


def test_without_a_token_the_dashboard_answers_loopback_only(tmp_path: Path) -> None:
    with running(settings_for(tmp_path)) as server, httpx.Client(base_url=server.url) as client:
        assert client.get("/dashboard").status_code == 200
        assert client.get("/api/dashboard").status_code == 200
        remote = client.get("/dashboard", headers=REMOTE)
        assert remote.status_code == 403 and "loopback" in remote.text
        assert client.get("/api/dashboard", headers=REMOTE).status_code == 403
        replay = client.post("/api/webhooks/replay", json={"webhookId": "x"}, headers=REMOTE)
        assert replay.status_code == 403
        assert client.get("/dashboard/static/uPlot.iife.min.js").status_code == 200
        assert client.get("/dashboard/static/../templates/login.html").status_code == 404


def test_the_data_endpoint_refuses_a_bad_window(guarded: Server) -> None:
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    with httpx.Client(base_url=guarded.url, headers=bearer) as client:
        for minutes in ("abc", "0", "-5", "10081", "1.5"):
            bad = client.get("/api/dashboard", params={"minutes": minutes})
            assert bad.status_code == 400 and "minutes" in bad.json()["detail"]
        data = client.get("/api/dashboard", params={"minutes": "3"}).json()
        assert len(data["minutes"]) == 3 and data["minutes"][2] - data["minutes"][0] == 120
        assert data["stats"] == client.get("/api/cache/stats").json()
        assert data["health"]["backend"] == "sqlite" and data["health"]["breaker"] == "closed"


def _deliver(client: httpx.Client, webhook_id: str, payload: dict[str, object]) -> int:
    body = json.dumps(payload).encode()
    headers = signed_headers(body, "orders/create", SHOP, webhook_id=webhook_id)
    return client.post("/webhooks", content=body, headers=headers).status_code


def test_the_replay_route_runs_a_failed_delivery_again(guarded: Server, tmp_path: Path) -> None:
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    with httpx.Client(base_url=guarded.url, headers=bearer) as client:
        assert _deliver(client, "fails-once", {"fail_first": True}) == 500
        assert _deliver(client, "works", {}) == 200
        data = client.get("/api/dashboard").json()
        outcomes = {row["webhookId"]: row["outcome"] for row in data["deliveries"]}
        assert outcomes == {"fails-once": "failed", "works": "processed"}
        counts = {(s["topic"], s["outcome"]): sum(s["counts"]) for s in data["webhooks"]}
        assert counts == {("orders/create", "failed"): 1, ("orders/create", "processed"): 1}

        replayed = client.post("/api/webhooks/replay", json={"webhookId": "fails-once"})
        assert replayed.status_code == 200
        assert replayed.json() == {"webhookId": "fails-once", "outcome": "processed", "detail": ""}
        again = client.post("/api/webhooks/replay", json={"webhookId": "fails-once", "shop": SHOP})
        assert again.status_code == 409 and again.json()["error"] == "not_failed"
        missing = client.post("/api/webhooks/replay", json={"webhookId": "never-sent"})
        assert missing.status_code == 404 and missing.json()["error"] == "not_found"
        for body in (b"not json", b"[]", b'{"webhookId": 5}', b'{"webhookId": "x", "shop": 1}'):
            assert client.post("/api/webhooks/replay", content=body).status_code == 400
        rows = client.get("/api/webhooks").json()["deliveries"]
        assert {row["webhookId"]: row["outcome"] for row in rows}["fails-once"] == "processed"
    kinds = [kind for kind, webhook_id, *_ in read_runs(tmp_path) if webhook_id == "fails-once"]
    assert kinds == ["start", "fail", "start", "done"]


T0 = 1_780_000_000.0  # the start of a minute


def _point(minute: int, series: str, value: float, **labels: str) -> Point:
    return Point(int(T0) + 60 * minute, series, labels, value)


def test_the_charts_arithmetic() -> None:
    axis = [int(T0) + 60 * m for m in range(3)]
    cache = [
        _point(0, "cache", 3, family="a", counter="hits"),
        _point(0, "cache", 1, family="a", counter="stale_hits"),
        _point(0, "cache", 4, family="a", counter="misses"),
        _point(2, "cache", 2, family="a", counter="misses"),
        _point(1, "cache", 5, family="b", counter="hits"),
        _point(1, "cache", 9, family="b", counter="sets"),  # not a look-up
        _point(-1, "cache", 7, family="b", counter="misses"),  # before the window
    ]
    assert hit_rates(cache, axis) == [
        {"family": "a", "rates": [0.5, None, 0.0]},
        {"family": "b", "rates": [None, 1.0, None]},
    ]
    ops = [
        _point(0, "kv_ops", 120, namespace="CACHE", op="read"),
        _point(0, "kv_ops", 60, namespace="CACHE", op="write"),
        _point(0, "kv_ops", 50, namespace="CACHE", op="rapid_write"),  # a detail of writes
        _point(2, "kv_ops", 30, namespace="CACHE", op="read"),
        _point(1, "kv_ops", 6, namespace="WEBHOOKS", op="write"),
    ]
    # The current minute (the last) is 15 s old: its rate is over 15 s, not 60.
    assert ops_rates(ops, axis, now=axis[2] + 15) == [
        {"namespace": "CACHE", "perSecond": [3.0, 0.0, 2.0]},
        {"namespace": "WEBHOOKS", "perSecond": [0.0, 0.1, 0.0]},
    ]
    hooks = [
        _point(0, "webhooks", 2, topic="orders/create", outcome="processed"),
        _point(2, "webhooks", 1, topic="orders/create", outcome="processed"),
        _point(2, "webhooks", 1, topic="", outcome="rejected"),
    ]
    assert webhook_counts(hooks, axis) == [
        {"topic": "", "outcome": "rejected", "counts": [0, 0, 1]},
        {"topic": "orders/create", "outcome": "processed", "counts": [2, 0, 1]},
    ]


async def test_two_workers_history_writers_add_up(tmp_path: Path) -> None:
    """Each worker's Metrics writes its own growth; the database holds the sum."""
    engine = open_database(f"sqlite+aiosqlite:///{tmp_path}/app.db")
    await migrate(engine)
    clock = FakeClock(T0 + 10)
    try:
        workers = [Metrics({}, history=History(engine, clock=clock)) for _ in range(2)]
        kv = await open_kv("memory://", clock=clock)
        caches = [Cache(kv, family=lambda key: key.partition(":")[0]) for _ in workers]
        for cache in caches:
            await cache.get("customer:1")  # a miss each
        await caches[0].set("customer:1", {"id": 1})
        await caches[0].get("customer:1")
        await caches[1].get("customer:1")
        stats: list[CacheStats] = [cache.stats() for cache in caches]
        for metrics, snapshot in zip(workers, stats, strict=True):
            metrics.push_cache("CACHE", snapshot)
            metrics.push_cache("CACHE", snapshot)  # no growth: nothing more
        workers[0].observe("orders/create", "processed", 0.01)
        workers[1].observe("orders/create", "processed")
        workers[1].observe("x" * 500, "ignored")  # a long topic is cut, never an error
        for metrics in workers:
            assert metrics.history is not None
            await metrics.history.flush()
        history = History(engine, clock=clock)
        cache_rows = {
            json.loads(labels)["counter"]: value
            for labels, value in (await history.totals("cache", since=T0)).items()
        }
        assert cache_rows == {"misses": 2.0, "hits": 2.0, "sets": 1.0}
        webhook_rows = await history.totals("webhooks", since=T0)
        processed = labels_key({"topic": "orders/create", "outcome": "processed"})
        assert webhook_rows[processed] == 2.0
        assert {json.loads(labels)["topic"] for labels in webhook_rows} == {
            "orders/create",
            "x" * 128,
        }
        await kv.close()
    finally:
        await engine.dispose()


async def test_concurrent_requests_of_one_window_share_one_computation() -> None:
    shared = SharedAnswers()
    gate = asyncio.Event()
    calls: list[int] = []

    async def compute(minutes: int) -> dict[str, Any]:
        calls.append(minutes)
        await gate.wait()
        return {"minutes": minutes, "call": len(calls)}

    def ask(minutes: int) -> asyncio.Future[dict[str, Any]]:
        return asyncio.ensure_future(shared.get(minutes, lambda: compute(minutes)))

    waiting = [ask(60), ask(60), ask(5)]
    leaver = ask(60)
    await asyncio.sleep(0)
    leaver.cancel()  # one client goes away: the others still get their answer
    gate.set()
    answers = await asyncio.gather(*waiting)
    assert calls == [60, 5] and answers[0] is answers[1] and answers[2]["minutes"] == 5
    assert (await shared.get(60, lambda: compute(60)))["call"] == 3  # none running: anew

    async def broken() -> dict[str, Any]:
        raise OSError("database gone")

    with pytest.raises(OSError, match="database gone"):
        await shared.get(1, broken)


def test_the_store_health_shows_the_breaker_open_when_redis_dies(
    tmp_path: Path, durable_redis: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DEMO_SHOPIFY_TOKEN", "shpat_emulator")  # read by the in-process server
    with ShopifyAdminEmulator() as emulator:
        emulator.add_customer("ann@example.com")
        settings = settings_for(tmp_path, store=durable_redis.url)
        added = subprocess.run(
            [sys.executable, "-m", "kvcache", "shop", "add", SHOP, "--token-env",
             "DEMO_SHOPIFY_TOKEN", "--admin-url", emulator.admin_url()],
            cwd=tmp_path, capture_output=True, text=True, timeout=60,
            env=os.environ | {"KVCACHE_DATABASE_URL": settings.database_url},
        )  # fmt: skip
        assert added.returncode == 0, added.stderr
        with running(settings) as server, httpx.Client(base_url=server.url) as client:
            lookup = {"shop": SHOP, "email": "ann@example.com"}
            assert client.get("/api/customers", params=lookup).status_code == 200
            health = client.get("/api/dashboard").json()["health"]
            assert (health["backend"], health["breaker"], health["errors"]) == (
                "redis",
                "closed",
                0,
            )
            durable_redis.kill()
            for _ in range(8):  # the cache fails open: Shopify answers every look-up
                assert client.get("/api/customers", params=lookup).status_code == 200
            data = client.get("/api/dashboard").json()
            health = data["health"]
            assert health["breaker"] in ("open", "half-open") and health["trips"] == 1
            assert health["consecutiveFailures"] >= 5 and health["errors"] >= 5
            assert health["skipped"] >= 1 and data["stats"]["errors"] == health["errors"]
