"""Pure pieces of the webhook service: HMAC, delivery parsing, registry, keys, settings."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kvcache import Cache, open_kv
from kvcache.app.settings import Settings, SettingsError, load_settings
from kvcache.shopify import (
    Delivery,
    DeliveryError,
    Webhooks,
    keys,
    parse_delivery,
    sign,
    verify_hmac,
)
from kvcache.shopify.keys import meter_family
from kvcache.shopify.samples import TOPICS, sample
from kvcache.shopify.webhooks import hmac_header, normalize_topic, signed_headers

SHOP = "demo.myshopify.com"


def test_verify_hmac_with_any_of_the_secrets() -> None:
    body = b'{"id":1}'
    assert verify_hmac(body, sign(body, "new"), ["old", "new"])
    assert verify_hmac(body, " " + sign(body, "old") + " ", ["old", "new"])
    assert not verify_hmac(body, sign(body, "other"), ["old", "new"])
    assert not verify_hmac(body, None, ["old"]) and not verify_hmac(body, "", ["old"])
    assert not verify_hmac(body, "héllo", ["old"])  # non-ASCII header: no crash, no match
    assert not verify_hmac(body, sign(body, "old"), [])


def test_events_headers_and_every_header_reach_the_handler() -> None:
    body = b'{"id": 1}'
    headers = {
        "shopify-hmac-sha256": sign(body, "s"),
        "shopify-topic": "customers/update",
        "shopify-shop-domain": SHOP,
        "shopify-webhook-id": "w",
        "shopify-event-id": "e",
        "shopify-handle": "my-sub",
        "shopify-action": "update",
        "shopify-resource-id": "gid://shopify/Customer/1",
        "X-Custom": "kept",
    }
    assert hmac_header(headers) == headers["shopify-hmac-sha256"]
    d = parse_delivery(headers, body)
    assert (d.kind, d.topic, d.shop, d.webhook_id, d.event_id) == (
        "events",
        "customers/update",
        SHOP,
        "w",
        "e",
    )
    assert (d.handle, d.action, d.resource_id) == ("my-sub", "update", "gid://shopify/Customer/1")
    assert d.headers["x-custom"] == "kept" and d.payload == {"id": 1}


def test_classic_delivery_fields() -> None:
    body = b'{"id": 1}'
    headers = signed_headers(body, "app/uninstalled", SHOP, "s", webhook_id="w", event_id="e")
    headers["X-Shopify-Name"] = "cleanup"
    d = parse_delivery(headers, body)
    assert (d.kind, d.name, d.api_version) == ("webhooks", "cleanup", "2025-07")
    assert d.triggered_at is not None and d.triggered_at.endswith("Z")
    assert len(d.body_sha256) == 64


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"X-Shopify-Topic": None, "X-Shopify-Webhook-Id": None},
            "X-Shopify-Topic, X-Shopify-Webhook-Id",
        ),
        ({"X-Shopify-Topic": "Not a topic"}, "is not a webhook topic"),
        ({"X-Shopify-Shop-Domain": "shop.example.com"}, "myshopify.com"),
        ({"X-Shopify-Webhook-Id": "x" * 256}, "1..255 printable"),
        ({"X-Shopify-Webhook-Id": "a\nb"}, "printable"),
    ],
)
def test_unusable_deliveries(change: dict[str, str | None], message: str) -> None:
    body = b"{}"
    headers: dict[str, str] = signed_headers(body, "customers/update", SHOP, "s")
    for name, value in change.items():
        if value is None:
            del headers[name]
        else:
            headers[name] = value
    with pytest.raises(DeliveryError, match=message):
        parse_delivery(headers, body)


def test_registry() -> None:
    webhooks = Webhooks()

    @webhooks.on("Orders/Create")
    async def first(delivery: Delivery, ctx: object) -> int:
        return 1

    async def second(delivery: Delivery, ctx: object) -> int:
        return 2

    webhooks.add("orders/create", second)
    assert webhooks.handlers("orders/create") == (first, second)
    assert webhooks.handlers("orders/paid") == () and webhooks.topics == ("orders/create",)

    def not_async(delivery: Delivery, ctx: object) -> None: ...

    with pytest.raises(TypeError, match="async function"):
        webhooks.add("orders/create", not_async)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="not a webhook topic"):
        webhooks.on("ORDERS_CREATE")
    assert normalize_topic("customer.tags_added") == "customer.tags_added"


def test_families_never_carry_shop_email_or_id() -> None:
    cases = {
        keys.customer_email_key(SHOP, "A@B.c"): "customer:email",
        keys.customer_id_key(SHOP, "gid://shopify/Customer/42"): "customer:id",
        keys.customer_index_key(SHOP, 42, "a@b.c"): "customer:emails",
        keys.shop_config_key(SHOP): "shop:config",
        keys.shop_prefix(SHOP): "shop",
        "plain:key:1": "plain:key",
    }
    for key, family in cases.items():
        assert keys.family(key) == family, key
    assert keys.customer_email_key(SHOP, " A@B.c ") == f"shop:{SHOP}:customer:email:a@b.c"
    assert keys.customer_id_key(SHOP, "gid://shopify/Customer/42").endswith(":customer:id:42")


async def test_cache_counts_under_the_family_function() -> None:
    async with open_kv("memory://") as kv:
        cache = Cache(kv, family=keys.family)
        await cache.set(keys.customer_email_key(SHOP, "a@b.c"), {"id": 1})
        await cache.get(keys.customer_email_key("other.myshopify.com", "a@b.c"))
        assert set(cache.stats().by_family) == {"customer:email"}
        with pytest.raises(TypeError, match="family must be callable"):
            Cache(kv, family="customer")  # type: ignore[arg-type]


def test_samples_are_json_for_every_topic() -> None:
    for topic in TOPICS:
        payload = sample(topic, SHOP)
        assert json.loads(json.dumps(payload)) == payload
    assert sample("app/uninstalled", SHOP)["myshopify_domain"] == SHOP
    with pytest.raises(KeyError, match="no sample payload"):
        sample("orders/paid", SHOP)


def test_settings_environment_over_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "kvcache.toml"
    config.write_text(
        'shopify_api_secret = ["old", "new"]\nstore = "memory://"\nhandlers = ["a.b"]\n'
        'webhook_lease_ttl = 45\n[kv.bindings.CACHE]\nnamespace = "CACHE"\n'  # the CLI's table
    )
    settings = load_settings(config, environ={"KVCACHE_STORE": "sqlite:///x.db"})
    assert settings.api_secrets == ("old", "new") and settings.store == "sqlite:///x.db"
    assert (settings.handlers, settings.webhook_lease_ttl) == (("a.b",), 45)
    env = {"SHOPIFY_API_SECRET": "one, two", "KVCACHE_WEBHOOK_RESULT_TTL": "90000"}
    (tmp_path / "empty").mkdir()
    monkeypatch.chdir(tmp_path / "empty")  # no ./kvcache.toml there: environment only
    settings = load_settings(environ=env)
    assert settings.api_secrets == ("one", "two") and settings.webhook_result_ttl == 90000
    assert Settings.from_json(settings.to_json()) == settings


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("shopify_api_secret = 3\n", "must be a string or a list"),
        ('shopify_api_secret = "s"\nwebhook_body_limit = "big"\n', "must be a whole number"),
        ('shopify_api_secret = "s"\nwebhook_body_limit = 0\n', "positive whole number"),
        ("shopify_api_secret = \n", "not valid TOML"),
        ("", "SHOPIFY_API_SECRET is not set"),
    ],
)
def test_bad_settings_files(tmp_path: Path, text: str, message: str) -> None:
    config = tmp_path / "kvcache.toml"
    config.write_text(text)
    with pytest.raises(SettingsError, match=message):
        load_settings(config, environ={})
    with pytest.raises(SettingsError, match="cannot read"):
        load_settings(tmp_path / "missing.toml", environ={})


def test_the_sync_cache_takes_the_family_function_too() -> None:
    import kvcache.sync

    with kvcache.sync.open_kv("memory://") as kv:
        cache = kvcache.sync.Cache(kv, family=keys.family)
        cache.set(keys.customer_id_key(SHOP, 7), {"id": 7})
        assert set(cache.stats().by_family) == {"customer:id"}


def test_settings_repr_hides_secrets_and_passwords() -> None:
    settings = Settings(
        api_secrets=("old-secret", "new-secret"),
        admin_token="admin-token",
        secret_key="fernet-key",
        store="redis://:store-password@127.0.0.1:6379/0",
        database_url="postgresql+asyncpg://app:db-password@127.0.0.1/app",
    )
    text = repr(settings)
    for secret in ("old-secret", "new-secret", "admin-token", "fernet-key", "password"):
        assert secret not in text
    assert "api_secrets='<2 hidden>'" in text and "admin_token='<hidden>'" in text
    assert "redis://:***@127.0.0.1:6379/0" in text and "app:***@127.0.0.1" in text
    assert "secret_key=None" in repr(Settings(api_secrets=("s",)))
    assert Settings.from_json(settings.to_json()) == settings  # the JSON form keeps them


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("shop:a.myshopify.com:customer:email:x@example.com", "customer:email"),
        ("shop:a.myshopify.com:config", "shop:config"),
        ("shop:a.myshopify.com:", "shop"),
        (".lease:shop:a.myshopify.com:customer:email:x@example.com", ".lease:customer:email"),
        (".deleted:shop:a.myshopify.com:customer:id:42", ".deleted:customer:id"),
        (".purge:shop:a.myshopify.com:customer:", ".purge:customer"),
        (".lease:report:2026-12-01", ".lease:report"),
        ("idem:a.myshopify.com:4b8f24b0-0b7d", "idem"),
        ("report:2026-12-01:x@example.com", "report"),
        ("", ""),
    ],
)
def test_meter_families_never_carry_a_shop_or_an_id(key: str, expected: str) -> None:
    assert meter_family(key) == expected
