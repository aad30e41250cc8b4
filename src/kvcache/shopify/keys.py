"""Cache keys of one shop, all under `shop:{shop}:`, and their statistics families.

Every key cached about a shop starts with `shop:{shop}:`, so one prefix deletion
purges the shop and two shops never share an entry (the seed keyed customers by
e-mail alone, a leak between tenants). Families drop the shop and anything after
the family's two segments, so statistics and metric labels never carry a shop,
an e-mail or an id:

    shop:{shop}:customer:email:{email}          -> customer:email
    shop:{shop}:customer:id:{id}                -> customer:id
    shop:{shop}:customer:emails:{id}:{email}    -> customer:emails  (the id -> e-mails index)
    shop:{shop}:config                          -> shop:config
"""

from __future__ import annotations

from typing import Any

from ..cache._fence import DELETED, LEASE, PURGE
from ..idempotency import DEFAULT_PREFIX

__all__ = [
    "customer_email_key",
    "customer_id",
    "customer_emails_prefix",
    "customer_id_key",
    "customer_index_key",
    "family",
    "meter_family",
    "normalize_email",
    "shop_config_key",
    "shop_prefix",
]


def shop_prefix(shop: str) -> str:
    """The prefix of everything cached about `shop`."""
    return f"shop:{shop}:"


def normalize_email(email: str) -> str:
    """E-mail addresses are looked up case-insensitively: one key per address."""
    return email.strip().lower()


def customer_id(value: Any) -> str:
    """A customer's numeric id as text, from `123`, `"123"` or `gid://shopify/Customer/123`."""
    text = str(value).strip()
    return text.rsplit("/", 1)[-1]


def customer_email_key(shop: str, email: str) -> str:
    return f"shop:{shop}:customer:email:{normalize_email(email)}"


def customer_id_key(shop: str, customer: Any) -> str:
    return f"shop:{shop}:customer:id:{customer_id(customer)}"


def customer_emails_prefix(shop: str, customer: Any) -> str:
    """The index of every e-mail a customer was cached under: one key per address.

    One key per (customer, address) rather than one list per customer, so two
    writers never lose each other's addresses in a read-modify-write.
    """
    return f"shop:{shop}:customer:emails:{customer_id(customer)}:"


def customer_index_key(shop: str, customer: Any, email: str) -> str:
    return customer_emails_prefix(shop, customer) + normalize_email(email)


def shop_config_key(shop: str) -> str:
    return f"shop:{shop}:config"


def family(key: str) -> str:
    """The statistics family of a cache key (a `Cache(family=...)` function).

    Shop-scoped keys: the first two segments after the shop, or `shop:<segment>`
    for a single one; the shop prefix itself is `shop`. Other keys: the
    key without its last segment, as the cache's default.
    """
    if not key.startswith("shop:"):
        return key.rpartition(":")[0]
    rest = key[5:].partition(":")[2]
    if not rest:
        return "shop"
    first, sep, tail = rest.partition(":")
    if not sep:
        return f"shop:{first}"
    second = tail.partition(":")[0]
    return f"{first}:{second}" if second else first


#: The kinds of the cache's own keys (its lease and fence bookkeeping).
_INTERNAL = (LEASE, DELETED, PURGE)


def meter_family(key: str) -> str:
    """The billing meter's family of any key the service stores (a `Meter(family)`).

    Like `family`, but safe for every key in CACHE and WEBHOOKS: the cache's own
    keys are its kind and the family of the key they serve (`.lease:customer:email`),
    webhook claims are `idem`, and any other key its first segment, so a metric
    label never carries a shop, an e-mail or an id.
    """
    for kind in _INTERNAL:
        if key.startswith(kind):
            rest = key[len(kind) :]
            return kind + (family(rest) if rest.startswith("shop:") else rest.partition(":")[0])
    if key.startswith(DEFAULT_PREFIX):  # the webhook claims (Idempotency's keys)
        return "idem"
    if key.startswith("shop:"):
        return family(key)
    return key.partition(":")[0]
