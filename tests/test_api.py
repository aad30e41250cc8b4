"""The JSON API end to end: `kvcache serve --workers 2` in front of the emulator.

One service and one emulator for the module (each test uses its own e-mails);
shops are added with the real `kvcache shop add`, as a user would.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from cryptography.fernet import Fernet

from kvcache.testing import ShopifyAdminEmulator
from service import SECRET, ServeProcess, deliver

SHOP = "demo.myshopify.com"
OTHER = "other.myshopify.com"
THIRD = "third.myshopify.com"  # throttled for minutes by one test


@dataclass
class Stack:
    server: ServeProcess
    emulator: ShopifyAdminEmulator
    env: dict[str, str]
    directory: Path

    def kvcache(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "kvcache", *args],
            cwd=self.directory,
            env=os.environ | self.env,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=60,
        )


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    directory = tmp_path_factory.mktemp("api")
    env = {
        "KVCACHE_STORE": f"sqlite:///{directory}/kv.sqlite3",
        "KVCACHE_DATABASE_URL": f"sqlite+aiosqlite:///{directory}/app.db",
        "SHOPIFY_API_SECRET": SECRET,
        "KVCACHE_SECRET_KEY": Fernet.generate_key().decode(),
        "DEMO_SHOPIFY_TOKEN": "shpat_emulator",
        "KVCACHE_SHOPIFY_RETRIES": "1",
    }
    with ShopifyAdminEmulator(latency=0.05) as emulator:
        emulator.add_shop(OTHER, access_token="shpat_other")
        stack = Stack(ServeProcess(directory, env, workers=2), emulator, env, directory)
        added = stack.kvcache(
            "shop", "add", SHOP, "--token-env", "DEMO_SHOPIFY_TOKEN",
            "--admin-url", emulator.admin_url(),
        )  # fmt: skip
        assert added.returncode == 0, added.stderr
        added = stack.kvcache(
            "shop", "add", OTHER, "--token-stdin", "--admin-url", emulator.admin_url(OTHER),
            stdin="shpat_other\n",
        )  # fmt: skip
        assert added.returncode == 0, added.stderr
        added = stack.kvcache(
            "shop", "add", THIRD, "--token-env", "DEMO_SHOPIFY_TOKEN",
            "--admin-url", emulator.admin_url(THIRD),
        )  # fmt: skip
        assert added.returncode == 0, added.stderr
        stack.server.start()
        try:
            yield stack
        finally:
            stack.server.stop()


@pytest.fixture
async def client(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    stack.emulator.clear_faults()
    async with httpx.AsyncClient(base_url=stack.server.url, timeout=30) as http:
        yield http


async def lookup(client: httpx.AsyncClient, email: str, shop: str = SHOP) -> httpx.Response:
    return await client.get("/api/customers", params={"shop": shop, "email": email})


async def test_a_customer_is_a_miss_then_a_hit(stack: Stack, client: httpx.AsyncClient) -> None:
    made = stack.emulator.add_customer("ann@example.com", first_name="Ann", tags=["vip"])
    before = stack.emulator.calls
    first = await lookup(client, "Ann@Example.com")
    assert first.status_code == 200 and first.headers["x-cache"] == "MISS"
    assert first.json() == {
        "id": made["id"],
        "email": "ann@example.com",
        "firstName": "Ann",
        "lastName": None,
        "tags": ["vip"],
    }
    second = await lookup(client, "ann@example.com")
    assert second.headers["x-cache"] == "HIT" and second.json() == first.json()
    assert stack.emulator.calls == before + 1


async def test_an_unknown_customer_is_404_and_cached(
    stack: Stack, client: httpx.AsyncClient
) -> None:
    before = stack.emulator.calls
    first = await lookup(client, "nobody@example.com")
    assert (first.status_code, first.json(), first.headers["x-cache"]) == (
        404,
        {"error": "not_found"},
        "MISS",
    )
    second = await lookup(client, "nobody@example.com")
    assert second.status_code == 404 and second.headers["x-cache"] == "HIT"
    assert stack.emulator.calls == before + 1


async def test_concurrent_lookups_across_two_workers_reach_shopify_once(
    stack: Stack, client: httpx.AsyncClient
) -> None:
    stack.emulator.add_customer("crowd@example.com")
    before = stack.emulator.operations("customerByIdentifier")
    async with httpx.AsyncClient(
        base_url=stack.server.url, timeout=30, limits=httpx.Limits(max_connections=40)
    ) as many:
        answers = await asyncio.gather(*(lookup(many, "crowd@example.com") for _ in range(40)))
    assert {answer.status_code for answer in answers} == {200}
    assert stack.emulator.operations("customerByIdentifier") == before + 1
    assert "MISS" in {answer.headers["x-cache"] for answer in answers}


async def test_create_then_find(stack: Stack, client: httpx.AsyncClient) -> None:
    assert (await lookup(client, "new@example.com")).status_code == 404
    body = {"email": "new@example.com", "firstName": "New", "lastName": "Comer", "tags": ["x"]}
    made = await client.post("/api/customers", params={"shop": SHOP}, json=body)
    assert made.status_code == 201
    assert made.json()["email"] == "new@example.com" and made.json()["tags"] == ["x"]
    found = await lookup(client, "new@example.com")  # the cached "not found" was dropped
    assert found.status_code == 200 and found.json() == made.json()


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        ({"email": "taken@example.com"}, ["email"], "Email has already been taken"),
        ({"email": "no-at"}, ["email"], "Email is invalid"),
        ({"email": "t@example.com", "tags": "vip"}, ["tags"], "must be a list of strings"),
        ([1, 2], [], "the body must be a JSON object"),
    ],
)
async def test_create_refusals_are_422(
    stack: Stack, client: httpx.AsyncClient, body: object, field: list[str], message: str
) -> None:
    errors = [{"field": field, "message": message}]
    if not any(c["email"] == "taken@example.com" for c in stack.emulator.customers()):
        stack.emulator.add_customer("taken@example.com")
    answer = await client.post("/api/customers", params={"shop": SHOP}, json=body)
    assert answer.status_code == 422 and answer.json() == {"errors": errors}


@pytest.mark.parametrize(
    ("method", "path", "params", "status"),
    [
        ("GET", "/api/customers", {"shop": "gone.myshopify.com", "email": "a@b.co"}, 404),
        ("POST", "/api/customers", {"shop": "gone.myshopify.com"}, 404),
        ("GET", "/api/shops/gone.myshopify.com/config", {}, 404),
        ("PUT", "/api/shops/gone.myshopify.com/config", {}, 404),
        ("GET", "/api/customers", {"shop": SHOP}, 400),
        ("GET", "/api/customers", {"email": "a@b.co"}, 400),
        ("GET", "/api/customers", {"shop": "Not A Shop", "email": "a@b.co"}, 400),
        ("GET", "/api/shops/not_a_shop/config", {}, 400),
    ],
)
async def test_unknown_shops_and_bad_parameters(
    client: httpx.AsyncClient, method: str, path: str, params: dict[str, str], status: int
) -> None:
    body = {"shopName": "x"} if method == "PUT" else {"email": "a@b.co"}
    answer = await client.request(method, path, params=params, json=body)
    assert answer.status_code == status, answer.text
    assert answer.json()["error"] == ("not_found" if status == 404 else "bad_request")


async def test_shop_config_read_and_updated(client: httpx.AsyncClient) -> None:
    path = f"/api/shops/{SHOP}/config"
    assert (await client.get(path)).json() == {"error": "not_found"}
    put = await client.put(path, json={"shopName": "Demo", "features": {"samplesEnabled": True}})
    assert put.status_code == 200
    config = put.json()
    assert config["shopName"] == "Demo" and config["shopId"] is None
    assert config["features"] == {
        "hcpEnabled": False,
        "samplesEnabled": True,
        "maxSamplesPerRequest": 0,
    }
    assert (await client.get(path)).json() == config
    bad = await client.put(path, json={"shopName": "Other", "features": {"hcpEnabled": "yes"}})
    assert bad.status_code == 422
    refused = {"field": ["features", "hcpEnabled"], "message": "must be true or false"}
    assert bad.json() == {"errors": [refused]}
    assert (await client.get(path)).json() == config  # nothing was written
    again = await client.put(path, json={"features": {"maxSamplesPerRequest": 5}})
    assert again.json()["features"]["maxSamplesPerRequest"] == 5
    assert again.json()["shopName"] == "Demo"
    assert (await client.get(path)).json() == again.json()


async def test_a_webhook_that_changes_the_email(stack: Stack, client: httpx.AsyncClient) -> None:
    made = stack.emulator.add_customer("before@example.com")
    assert (await lookup(client, "before@example.com")).headers["x-cache"] == "MISS"
    assert (await lookup(client, "before@example.com")).headers["x-cache"] == "HIT"
    stack.emulator.update_customer(made["id"], email="after@example.com")
    numeric = int(made["id"].rsplit("/", 1)[1])
    payload = {"id": numeric, "email": "after@example.com", "updated_at": "2026-01-01T00:00:00Z"}
    answer = await deliver(client, "customers/update", SHOP, payload)
    assert answer.status_code == 200 and answer.json()["outcome"] == "processed"
    old = await lookup(client, "before@example.com")
    assert (old.status_code, old.headers["x-cache"]) == (404, "MISS")
    new = await lookup(client, "after@example.com")
    assert new.status_code == 200 and new.json()["id"] == made["id"]


async def test_shopify_down_is_503_with_retry_after(
    stack: Stack, client: httpx.AsyncClient
) -> None:
    stack.emulator.fail_next(503, times=2)  # KVCACHE_SHOPIFY_RETRIES=1: two attempts
    failed = await lookup(client, "down2@example.com")
    assert failed.status_code == 503 and int(failed.headers["retry-after"]) >= 1
    # Nothing was cached: the next look-up asks Shopify again and succeeds.
    again = await lookup(client, "down2@example.com")
    assert (again.status_code, again.headers["x-cache"]) == (404, "MISS")
    # A Retry-After longer than the client waits is handed on, and the shop rests.
    stack.emulator.fail_next(429, retry_after=120)
    throttled = await lookup(client, "down1@example.com", THIRD)
    assert throttled.status_code == 503 and throttled.headers["retry-after"] == "120"
    assert throttled.json()["error"] == "shopify_unavailable"


async def test_a_refused_token_is_502(stack: Stack, client: httpx.AsyncClient) -> None:
    stack.emulator.fail_next(401, body={"errors": "[API] Invalid API key or access token"})
    answer = await lookup(client, "refused@example.com")
    assert answer.status_code == 502 and answer.json()["error"] == "shopify_unauthorized"
    assert "shpat_" not in answer.text


async def test_uninstalled_shops_are_404_and_lose_their_token(
    stack: Stack, client: httpx.AsyncClient
) -> None:
    stack.emulator.add_customer("theirs@example.com", shop=OTHER)
    assert (await lookup(client, "theirs@example.com", OTHER)).status_code == 200
    answer = await deliver(client, "app/uninstalled", OTHER, {"id": 2, "myshopify_domain": OTHER})
    assert answer.status_code == 200
    listed = {
        row["shop"]: row for row in json.loads(stack.kvcache("shop", "list", "--json").stdout)
    }
    assert listed[OTHER]["installed"] is False and listed[OTHER]["token"] == "none"
    assert listed[SHOP]["installed"] is True
    await asyncio.sleep(5.5)  # the other worker's shop record may be up to 5 s old
    for _ in range(4):
        gone = await lookup(client, "theirs@example.com", OTHER)
        assert gone.status_code == 404 and gone.json()["error"] == "not_found"
    assert (await client.get(f"/api/shops/{OTHER}/config")).status_code == 404
