"""Every answer of `POST /webhooks`, from a real uvicorn over HTTP.

Each status of the contract (DESIGN.md "The service"), the HMAC under rotated
secrets and header-case variants, and the delivery log and metrics it leaves.
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from kvcache.shopify import sign
from service import SECRET, Server, deliver, running, settings_for, signed_headers

SHOP = "demo.myshopify.com"
CUSTOMER = {"id": 1, "email": "a@example.com", "admin_graphql_api_id": "gid://shopify/Customer/1"}


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    settings = settings_for(tmp_path, api_secrets=("old-secret", SECRET), webhook_body_limit=4096)
    with running(settings) as started:
        yield started


@pytest.fixture
async def client(server: Server) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.url) as http:
        yield http


async def test_processed_then_duplicate(client: httpx.AsyncClient) -> None:
    first = await deliver(client, "customers/update", SHOP, CUSTOMER, webhook_id="w-1")
    again = await deliver(client, "customers/update", SHOP, CUSTOMER, webhook_id="w-1")
    assert (first.status_code, first.json()["outcome"]) == (200, "processed")
    assert (again.status_code, again.json()["outcome"]) == (200, "duplicate")
    log = (await client.get("/api/webhooks")).json()
    assert log["next"] is None
    [row] = log["deliveries"]
    assert row["webhookId"] == "w-1"
    assert (row["outcome"], row["attempts"], row["shop"]) == ("processed", 2, SHOP)
    assert row["topic"] == "customers/update" and row["apiVersion"] == "2025-07"
    assert row["eventId"] and row["receivedAt"].endswith("Z") and row["error"] is None


async def test_same_id_in_two_shops_is_two_deliveries(client: httpx.AsyncClient) -> None:
    one = await deliver(client, "customers/update", SHOP, CUSTOMER, webhook_id="w-1")
    two = await deliver(
        client, "customers/update", "other.myshopify.com", CUSTOMER, webhook_id="w-1"
    )
    assert [one.json()["outcome"], two.json()["outcome"]] == ["processed", "processed"]


async def test_reused_id_with_another_body_is_a_conflict(client: httpx.AsyncClient) -> None:
    await deliver(client, "customers/update", SHOP, CUSTOMER, webhook_id="w-1")
    changed = await deliver(
        client, "customers/update", SHOP, {**CUSTOMER, "email": "b@example.com"}, webhook_id="w-1"
    )
    assert (changed.status_code, changed.json()["outcome"]) == (200, "conflict")
    [row] = (await client.get("/api/webhooks", params={"outcome": "conflict"})).json()["deliveries"]
    assert "different body" in row["error"]


async def test_unhandled_topic_is_ignored(client: httpx.AsyncClient) -> None:
    answer = await deliver(client, "orders/create", SHOP, {"id": 5})
    assert (answer.status_code, answer.json()["outcome"]) == (200, "ignored")
    [row] = (await client.get("/api/webhooks")).json()["deliveries"]
    assert row["outcome"] == "ignored"


async def test_bad_or_missing_hmac_is_401(client: httpx.AsyncClient) -> None:
    body = json.dumps(CUSTOMER).encode()
    forged = signed_headers(body, "customers/update", SHOP, secret="not-the-secret")
    assert (await client.post("/webhooks", content=body, headers=forged)).status_code == 401
    unsigned = {k: v for k, v in forged.items() if k != "X-Shopify-Hmac-Sha256"}
    assert (await client.post("/webhooks", content=body, headers=unsigned)).status_code == 401
    tampered = signed_headers(body, "customers/update", SHOP)
    answer = await client.post("/webhooks", content=body + b" ", headers=tampered)
    assert (answer.status_code, answer.json()["outcome"]) == (401, "rejected")
    assert (await client.get("/api/webhooks")).json()["deliveries"] == []


async def test_rotated_secrets_both_verify(client: httpx.AsyncClient) -> None:
    old = await deliver(client, "customers/update", SHOP, CUSTOMER, secret="old-secret")
    new = await deliver(client, "customers/update", SHOP, CUSTOMER, secret=SECRET)
    assert [old.status_code, new.status_code] == [200, 200]


@pytest.mark.parametrize("case", ["lower", "upper", "events"])
async def test_header_names_in_any_case(client: httpx.AsyncClient, case: str) -> None:
    body = json.dumps(CUSTOMER).encode()
    headers = signed_headers(body, "customers/update", SHOP, webhook_id=f"case-{case}")
    if case == "events":
        headers = {k.lower().removeprefix("x-"): v for k, v in headers.items()}
    else:
        headers = {(k.lower() if case == "lower" else k.upper()): v for k, v in headers.items()}
    answer = await client.post("/webhooks", content=body, headers=headers)
    assert (answer.status_code, answer.json()["outcome"]) == (200, "processed")


@pytest.mark.parametrize(
    "missing", ["X-Shopify-Topic", "X-Shopify-Shop-Domain", "X-Shopify-Webhook-Id"]
)
async def test_missing_header_is_400(client: httpx.AsyncClient, missing: str) -> None:
    body = json.dumps(CUSTOMER).encode()
    headers = signed_headers(body, "customers/update", SHOP)
    del headers[missing]
    answer = await client.post("/webhooks", content=body, headers=headers)
    assert answer.status_code == 400
    assert missing in answer.json()["detail"]


async def test_body_not_json_is_400(client: httpx.AsyncClient) -> None:
    for body in (b"{not json", b"[1, 2]", b""):
        headers = signed_headers(body, "customers/update", SHOP)
        answer = await client.post("/webhooks", content=body, headers=headers)
        assert (answer.status_code, answer.json()["outcome"]) == (400, "rejected"), body


async def test_shop_domain_must_be_myshopify(client: httpx.AsyncClient) -> None:
    answer = await deliver(client, "customers/update", "evil.example.com:x", CUSTOMER)
    assert answer.status_code == 400


async def test_topic_path_must_match_header(client: httpx.AsyncClient) -> None:
    good = await deliver(
        client, "customers/update", SHOP, CUSTOMER, path="/webhooks/customers/update"
    )
    bad = await deliver(
        client, "app/uninstalled", SHOP, {"id": 1}, path="/webhooks/customers/update"
    )
    assert good.status_code == 200 and bad.status_code == 400


async def test_other_methods_are_405(client: httpx.AsyncClient) -> None:
    for method in ("GET", "PUT", "DELETE"):
        assert (await client.request(method, "/webhooks")).status_code == 405
        assert (await client.request(method, "/webhooks/app/uninstalled")).status_code == 405


async def test_body_over_the_limit_is_413(client: httpx.AsyncClient) -> None:
    body = json.dumps({"id": 1, "note": "x" * 5000}).encode()
    headers = signed_headers(body, "customers/update", SHOP)
    answer = await client.post("/webhooks", content=body, headers=headers)
    assert (answer.status_code, answer.json()["outcome"]) == (413, "rejected")

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: the streamed size counts
        for _ in range(10):
            yield b"x" * 1000

    streamed = await client.post("/webhooks", content=chunks(), headers=headers)
    assert streamed.status_code == 413


async def test_metrics_count_outcomes_without_shop_labels(client: httpx.AsyncClient) -> None:
    await deliver(client, "customers/update", SHOP, CUSTOMER, webhook_id="m-1")
    await deliver(client, "customers/update", SHOP, CUSTOMER, webhook_id="m-1")
    await deliver(client, "customers/update", SHOP, CUSTOMER, secret="wrong")
    text = (await client.get("/metrics")).text
    assert 'kvcache_webhooks_total{outcome="processed",topic="customers/update"} 1.0' in text
    assert 'kvcache_webhooks_total{outcome="duplicate",topic="customers/update"} 1.0' in text
    assert 'kvcache_webhooks_total{outcome="rejected",topic=""} 1.0' in text
    assert 'kvcache_webhook_duration_seconds_count{topic="customers/update"} 1.0' in text
    assert 'kvcache_cache_deletes_total{cache="CACHE",family="customer:id"}' in text
    assert SHOP not in text and "example.com" not in text


async def test_healthz(client: httpx.AsyncClient) -> None:
    answer = await client.get("/healthz")
    assert (answer.status_code, answer.json()) == (200, {"status": "ok"})


def test_sign_is_base64_hmac_sha256() -> None:
    # RFC 4231 test case 2, whose digest is given in hex there; Shopify sends base64.
    digest = "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    expected = base64.b64encode(bytes.fromhex(digest)).decode()
    assert sign(b"what do ya want for nothing?", "Jefe") == expected
