"""Realistic sample payloads per topic, as Shopify CLI's `app webhook trigger` sends.

Shapes follow Shopify's reference samples (REST Customer and Shop resources,
the compliance payloads of the app template's privacy.js); ids are Shopify's
sample ids. `sample(topic, shop)` fills in the shop's domain.
"""

from __future__ import annotations

import copy
from typing import Any

__all__ = ["TOPICS", "sample"]

_CUSTOMER: dict[str, Any] = {
    "id": 706405506930370084,
    "email": "bob@biller.com",
    "created_at": "2021-12-31T19:00:00-05:00",
    "updated_at": "2021-12-31T19:00:00-05:00",
    "first_name": "Bob",
    "last_name": "Biller",
    "orders_count": 0,
    "state": "disabled",
    "total_spent": "0.00",
    "last_order_id": None,
    "note": "This customer loves ice cream",
    "verified_email": True,
    "multipass_identifier": None,
    "tax_exempt": False,
    "tags": "",
    "last_order_name": None,
    "currency": "USD",
    "phone": None,
    "addresses": [],
    "tax_exemptions": [],
    "admin_graphql_api_id": "gid://shopify/Customer/706405506930370084",
    "default_address": None,
}

_SHOP: dict[str, Any] = {
    "id": 548380009,
    "name": "Super Toys",
    "email": "super@supertoys.com",
    "domain": "{shop}",
    "province": "Tennessee",
    "country": "US",
    "address1": "190 MacLaren Street",
    "zip": "37178",
    "city": "Houston",
    "phone": "3213213210",
    "primary_locale": "en",
    "created_at": "2007-12-31T19:00:00-05:00",
    "updated_at": "2007-12-31T19:00:00-05:00",
    "country_code": "US",
    "country_name": "United States",
    "currency": "USD",
    "customer_email": "super@supertoys.com",
    "timezone": "(GMT-05:00) Eastern Time (US & Canada)",
    "iana_timezone": "America/New_York",
    "shop_owner": "John Smith",
    "money_format": "${{amount}}",
    "weight_unit": "lb",
    "plan_name": "enterprise",
    "plan_display_name": "Shopify Plus",
    "myshopify_domain": "{shop}",
}

_SAMPLES: dict[str, dict[str, Any]] = {
    "customers/create": _CUSTOMER,
    "customers/update": _CUSTOMER,
    "customers/delete": {
        "id": 706405506930370084,
        "tax_exemptions": [],
        "admin_graphql_api_id": "gid://shopify/Customer/706405506930370084",
    },
    "shop/update": _SHOP,
    "app/uninstalled": _SHOP,
    "customers/data_request": {
        "shop_id": 954889,
        "shop_domain": "{shop}",
        "orders_requested": [299938, 280263, 220458],
        "customer": {"id": 191167, "email": "john@example.com", "phone": "555-625-1199"},
        "data_request": {"id": 9999},
    },
    "customers/redact": {
        "shop_id": 954889,
        "shop_domain": "{shop}",
        "customer": {"id": 191167, "email": "john@example.com", "phone": "555-625-1199"},
        "orders_to_redact": [299938, 280263, 220458],
    },
    "shop/redact": {"shop_id": 954889, "shop_domain": "{shop}"},
    "orders/create": {
        "id": 820982911946154508,
        "email": "jon@example.com",
        "created_at": "2021-12-31T19:00:00-05:00",
        "currency": "USD",
        "total_price": "403.00",
        "financial_status": "voided",
        "name": "#9999",
        "admin_graphql_api_id": "gid://shopify/Order/820982911946154508",
        "line_items": [{"id": 866550311766439020, "quantity": 1, "price": "199.00"}],
    },
}

TOPICS = tuple(sorted(_SAMPLES))


def _fill(value: Any, shop: str) -> Any:
    if isinstance(value, str):
        return shop if value == "{shop}" else value
    if isinstance(value, dict):
        return {key: _fill(item, shop) for key, item in value.items()}
    if isinstance(value, list):
        return [_fill(item, shop) for item in value]
    return value


def sample(topic: str, shop: str) -> dict[str, Any]:
    """A fresh copy of the topic's sample payload for `shop`; KeyError names the topics."""
    if topic not in _SAMPLES:
        raise KeyError(f"no sample payload for {topic!r}; known: {', '.join(TOPICS)} (or --file)")
    filled: dict[str, Any] = _fill(copy.deepcopy(_SAMPLES[topic]), shop)
    return filled
