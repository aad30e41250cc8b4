"""The seed's CustomerRepository: customers by e-mail from the Admin API, cached per shop.

`find_by_email(email)` normalises the address (strip, lower case) and reads
`shop:{shop}:customer:email:{email}` through `Cache.lookup(lock=True)` (get_or_set that
also tells a hit from a fill, for the API's X-Cache): on a miss
one caller per key asks Shopify (in this process, and across processes on an
atomic store) while the others wait for its answer. The look-up is the exact
`customerByIdentifier(identifier: {emailAddress:})` on API versions that have it
(2025-01 on) and the search `customers(first: 1, query: "email:...")` before, or
when a shop answers that the field does not exist. A customer is cached 30 minutes
and its id -> e-mail pair is written to the index the webhook handlers read, before
the entry itself, so a `customers/update` or `customers/delete` finds every address
it was cached under. "No such customer" is cached for 60 seconds.

`create(dto)` runs `customerCreate`; its `userErrors` become `CustomerCreationError`;
on success the e-mail's entry (perhaps a cached "not found") is invalidated.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .. import Cache
from ..errors import CustomerCreationError, GraphQLError
from . import keys
from .admin import AdminClient

__all__ = [
    "CUSTOMER_TTL",
    "NOT_FOUND_TTL",
    "CustomerRepository",
    "Lookup",
    "check_email",
    "customer_input",
]

logger = logging.getLogger(__name__)

CUSTOMER_TTL = 1800
NOT_FOUND_TTL = 60
MAX_EMAIL_CHARS = 254
#: The index outlives the entries it points at, so no entry is ever orphaned.
INDEX_GRACE = 300

_BY_IDENTIFIER = (
    "query CustomerByEmail($email: String!) "
    "{ customerByIdentifier(identifier: {emailAddress: $email}) { %s } }"
)
_SEARCH = (
    "query CustomerSearch($query: String!) "
    "{ customers(first: 1, query: $query) { edges { node { %s } } } }"
)
_CREATE = (
    "mutation CustomerCreate($input: CustomerInput!) "
    "{ customerCreate(input: $input) { customer { %s } userErrors { field message } } }"
)
_INPUT_FIELDS = {"email": str, "firstName": str, "lastName": str, "phone": str, "note": str}


def check_email(email: Any) -> str:
    """The normalised address, or ValueError naming what is wrong."""
    if not isinstance(email, str):
        raise TypeError(f"email must be str, not {type(email).__name__}")
    normal = keys.normalize_email(email)
    if not normal or "@" not in normal or len(normal) > MAX_EMAIL_CHARS:
        raise ValueError(f"email must be an e-mail address of at most {MAX_EMAIL_CHARS} characters")
    if any(ch.isspace() or ord(ch) < 32 for ch in normal):
        raise ValueError("email must not contain spaces or control characters")
    return normal


def customer_input(dto: Mapping[str, Any]) -> dict[str, Any]:
    """The seed's new-customer DTO (`email`, `firstName`, `lastName`, `tags`; also
    `phone`, `note`) as a CustomerInput; a bad field is a `CustomerCreationError` too."""
    if not isinstance(dto, Mapping):
        raise TypeError(f"the customer must be a mapping, not {type(dto).__name__}")
    fields: dict[str, Any] = {}
    for name, value in dto.items():
        if name == "tags":
            if not isinstance(value, list) or not all(isinstance(tag, str) for tag in value):
                raise CustomerCreationError([name], "must be a list of strings")
        elif name not in _INPUT_FIELDS:
            raise CustomerCreationError([str(name)], "is not a customer field")
        elif value is not None and not isinstance(value, str):
            raise CustomerCreationError([name], "must be a string")
        if value is not None:
            fields[name] = value
    if isinstance(fields.get("email"), str):
        fields["email"] = fields["email"].strip()
    return fields


def _has(version: str, since: str) -> bool:
    return version == "unstable" or version >= since


def _search_value(email: str) -> str:
    """`email:"..."` in Shopify's search syntax, the value quoted and escaped."""
    escaped = email.replace("\\", "\\\\").replace('"', '\\"')
    return f'email:"{escaped}"'


@dataclass(frozen=True, slots=True)
class Lookup:
    """A look-up's answer: the customer (None: Shopify has none) and whether the cache had it."""

    customer: dict[str, Any] | None
    hit: bool


class CustomerRepository:
    """Customers of `admin.shop` by e-mail, through `cache` (the shop's keys)."""

    def __init__(
        self,
        admin: AdminClient,
        cache: Cache,
        *,
        ttl: float = CUSTOMER_TTL,
        negative_ttl: float = NOT_FOUND_TTL,
    ) -> None:
        self.admin = admin
        self.cache = cache
        self.shop = admin.shop
        self.ttl = ttl
        self.negative_ttl = negative_ttl
        version = admin.api_version
        self._exact = _has(version, "2025-01")
        email_field = (
            "defaultEmailAddress { emailAddress }" if _has(version, "2025-04") else "email"
        )
        self._fields = f"id {email_field} firstName lastName tags"

    def __repr__(self) -> str:
        return f"<CustomerRepository shop={self.shop!r}>"

    async def find_by_email(self, email: str) -> dict[str, Any] | None:
        """The customer with this e-mail (`{"id", "email", "firstName", "lastName", "tags"}`)."""
        return (await self.lookup(email)).customer

    async def lookup(self, email: str) -> Lookup:
        """`find_by_email`, also saying whether the answer came from the cache without waiting."""
        normal = check_email(email)
        key = keys.customer_email_key(self.shop, normal)

        async def fetch() -> dict[str, Any] | None:
            customer = await self._fetch(normal)
            if customer is not None:
                index = keys.customer_index_key(self.shop, customer["id"], normal)
                await self.cache.set(index, normal, ttl=self.ttl + INDEX_GRACE)
            return customer

        customer, hit = await self.cache.lookup(
            key, fetch, ttl=self.ttl, negative_ttl=self.negative_ttl, lock=True
        )
        return Lookup(customer, hit)

    async def _fetch(self, email: str) -> dict[str, Any] | None:
        if self._exact:
            try:
                answer = await self.admin.execute(_BY_IDENTIFIER % self._fields, {"email": email})
            except GraphQLError as exc:
                if not _no_by_identifier(exc):
                    raise
                logger.info("%s has no customerByIdentifier: searching by e-mail", self.shop)
                self._exact = False
            else:
                return _customer(answer.data.get("customerByIdentifier"))
        answer = await self.admin.execute(_SEARCH % self._fields, {"query": _search_value(email)})
        edges = (answer.data.get("customers") or {}).get("edges") or []
        found = _customer(edges[0].get("node")) if edges else None
        # The search index matches loosely and lags writes: only an exact match counts.
        if found is None or keys.normalize_email(found.get("email") or "") != email:
            return None
        return found

    async def create(self, dto: Mapping[str, Any]) -> dict[str, Any]:
        """customerCreate; `CustomerCreationError` for Shopify's user errors."""
        fields = customer_input(dto)
        answer = await self.admin.execute(_CREATE % self._fields, {"input": fields})
        payload = answer.data.get("customerCreate") or {}
        errors = [e for e in payload.get("userErrors") or [] if isinstance(e, dict)]
        if errors or not payload.get("customer"):
            first: dict[str, Any] = errors[0] if errors else {"message": "no customer was created"}
            field = first.get("field")
            raise CustomerCreationError(
                [str(part) for part in field] if isinstance(field, list) else None,
                str(first.get("message")),
                errors=errors,
                shop=self.shop,
            )
        customer = _customer(payload["customer"])
        assert customer is not None
        for email in {fields.get("email"), customer.get("email")}:
            if email:
                await self.invalidate(email)
        return customer

    async def invalidate(self, email: str) -> None:
        """Drop the cached answer for this e-mail (a customer or a "not found")."""
        await self.cache.delete(keys.customer_email_key(self.shop, check_email(email)))


def _no_by_identifier(error: GraphQLError) -> bool:
    for item in error.errors:
        extensions = item.get("extensions") or {}
        named = extensions.get("fieldName") == "customerByIdentifier"
        if named or ("customerByIdentifier" in str(item.get("message", ""))):
            if extensions.get("code") in (None, "undefinedField"):
                return True
    return False


def _customer(node: Any) -> dict[str, Any] | None:
    """The seed's Customer object from a GraphQL node."""
    if not isinstance(node, dict) or not node.get("id"):
        return None
    email = node.get("email")
    default = node.get("defaultEmailAddress")
    if isinstance(default, dict) and default.get("emailAddress"):
        email = default["emailAddress"]
    tags = node.get("tags")
    return {
        "id": node["id"],
        "email": email,
        "firstName": node.get("firstName"),
        "lastName": node.get("lastName"),
        "tags": list(tags) if isinstance(tags, list) else [],
    }
