"""One emulated shop: its customers, Shopify's search syntax over them, and its cost bucket.

The bucket is Shopify's leaky bucket (shopify.dev "GraphQL Admin API rate limits"):
it must hold a query's requested cost before the query runs, refills at the
plan's restore rate up to its size, and gets back the difference between the
requested and the actual cost afterwards. Sizes are 20 times the restore rate,
as real responses report them (2000.0 points at 100.0 a second on a standard
plan); `legacy` is the original 1000 at 50.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

__all__ = ["PLANS", "Bucket", "CustomerRecord", "EmulatedShop", "UserErrors", "search_terms"]

#: plan -> (maximumAvailable, restoreRate)
PLANS: dict[str, tuple[float, float]] = {
    "standard": (2000.0, 100.0),
    "advanced": (4000.0, 200.0),
    "plus": (20000.0, 1000.0),
    "enterprise": (40000.0, 2000.0),
    "legacy": (1000.0, 50.0),
}
FIRST_CUSTOMER_ID = 7_000_000_000_001
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s.]+")
_TERM = re.compile(
    r"""(?:(?P<field>\w+):)?(?:"(?P<dq>(?:[^"\\]|\\.)*)"|'(?P<sq>(?:[^'\\]|\\.)*)'|(?P<bare>(?:[^\s\\]|\\.)+))"""
)


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class UserErrors(Exception):
    """A mutation's `userErrors`: a list of `{"field": [...] or None, "message": ...}`."""

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        self.errors = errors
        super().__init__(errors[0]["message"] if errors else "user error")


@dataclass
class Bucket:
    """The leaky bucket of one app and shop."""

    maximum: float
    rate: float
    clock: Callable[[], float]
    level: float = -1.0
    at: float = 0.0

    def __post_init__(self) -> None:
        if self.level < 0:
            self.level, self.at = self.maximum, self.clock()

    def available(self) -> float:
        now = self.clock()
        self.level = min(self.maximum, self.level + max(0.0, now - self.at) * self.rate)
        self.at = now
        return self.level

    def take(self, cost: float) -> bool:
        """Take `cost` points if the bucket holds them."""
        if self.available() < cost:
            return False
        self.level -= cost
        return True

    def refund(self, points: float) -> None:
        self.level = min(self.maximum, self.available() + max(0.0, points))

    def seconds_until(self, cost: float) -> float:
        return max(0.0, (min(cost, self.maximum) - self.available()) / self.rate)

    def status(self) -> dict[str, Any]:
        return {
            "maximumAvailable": float(self.maximum),
            "currentlyAvailable": int(self.available()),
            "restoreRate": float(self.rate),
        }


@dataclass
class CustomerRecord:
    id: int
    email: str | None
    first_name: str | None = None
    last_name: str | None = None
    phone: str | None = None
    tags: list[str] = field(default_factory=list)
    note: str | None = None
    created_at: str = field(default_factory=_now)
    updated_at: str = field(default_factory=_now)

    @property
    def gid(self) -> str:
        return f"gid://shopify/Customer/{self.id}"

    def node(self) -> dict[str, Any]:
        """The GraphQL `Customer` object (fields by their schema names)."""
        name = " ".join(part for part in (self.first_name, self.last_name) if part)
        return {
            "id": self.gid,
            "legacyResourceId": str(self.id),
            "email": self.email,
            "firstName": self.first_name,
            "lastName": self.last_name,
            "displayName": name or self.email or self.phone or "",
            "phone": self.phone,
            "tags": list(self.tags),
            "note": self.note,
            "createdAt": self.created_at,
            "updatedAt": self.updated_at,
            "defaultEmailAddress": None
            if self.email is None
            else {"emailAddress": self.email, "marketingState": "NOT_SUBSCRIBED"},
        }


def search_terms(query: str) -> list[tuple[str | None, str]]:
    """Shopify's search syntax: `field:value` terms (values may be quoted, `\\` escapes)."""
    terms: list[tuple[str | None, str]] = []
    for match in _TERM.finditer(query):
        raw = match.group("dq") or match.group("sq") or match.group("bare") or ""
        value = re.sub(r"\\(.)", r"\1", raw)
        if value.upper() in ("AND", "") and match.group("field") is None:
            continue
        terms.append((match.group("field"), value))
    return terms


def _parse_id(value: Any) -> int | None:
    text = str(value).strip().rsplit("/", 1)[-1]
    return int(text) if text.isdigit() else None


class EmulatedShop:
    """Customers and the bucket of one shop; every method is safe across threads."""

    def __init__(self, domain: str, bucket: Bucket, token: str | None) -> None:
        self.domain = domain
        self.bucket = bucket
        self.token = token
        self.lock = threading.RLock()
        self._customers: dict[int, CustomerRecord] = {}
        self._next_id = FIRST_CUSTOMER_ID

    # -- reads ---------------------------------------------------------------

    def by_id(self, value: Any) -> CustomerRecord | None:
        ident = _parse_id(value)
        with self.lock:
            return None if ident is None else self._customers.get(ident)

    def by_email(self, email: str) -> CustomerRecord | None:
        wanted = email.strip().lower()
        with self.lock:
            for record in self._customers.values():
                if record.email is not None and record.email.lower() == wanted:
                    return record
        return None

    def search(self, query: str | None) -> list[CustomerRecord]:
        """`customers(query:)`: email, first_name, last_name, tag, id; bare words match names."""
        with self.lock:
            found = sorted(self._customers.values(), key=lambda r: r.id)
        for name, value in search_terms(query or ""):
            found = [record for record in found if _matches(record, name, value.lower())]
        return found

    def all(self) -> list[CustomerRecord]:
        with self.lock:
            return sorted(self._customers.values(), key=lambda r: r.id)

    # -- writes --------------------------------------------------------------

    def create(self, fields: dict[str, Any]) -> CustomerRecord:
        """customerCreate's rules: an e-mail must be valid and unused; someone must be named."""
        with self.lock:
            values = self._checked(fields, None)
            if not any(values.get(k) for k in ("email", "phone", "first_name", "last_name")):
                raise UserErrors(
                    [
                        {
                            "field": None,
                            "message": "A name, phone number, or email address must be present",
                        }
                    ]
                )
            record = CustomerRecord(id=self._next_id, email=values.pop("email", None), **values)
            self._next_id += 1
            self._customers[record.id] = record
            return record

    def update(self, ident: Any, fields: dict[str, Any]) -> CustomerRecord:
        with self.lock:
            record = self.by_id(ident)
            if record is None:
                raise UserErrors([{"field": ["id"], "message": "Customer does not exist"}])
            for name, value in self._checked(fields, record.id).items():
                setattr(record, name, value)
            record.updated_at = _now()
            return record

    def delete(self, ident: Any) -> bool:
        with self.lock:
            record = self.by_id(ident)
            return record is not None and self._customers.pop(record.id, None) is not None

    def _checked(self, fields: dict[str, Any], own_id: int | None) -> dict[str, Any]:
        names = {"email": "email", "firstName": "first_name", "lastName": "last_name"}
        names |= {"phone": "phone", "tags": "tags", "note": "note"}
        values: dict[str, Any] = {}
        for key, value in fields.items():
            if key in names and value is not None:
                values[names[key]] = value
        email = values.get("email")
        if email is not None:
            email = values["email"] = str(email).strip()
            if not _EMAIL.fullmatch(email):
                raise UserErrors([{"field": ["email"], "message": "Email is invalid"}])
            taken = self.by_email(email)
            if taken is not None and taken.id != own_id:
                raise UserErrors([{"field": ["email"], "message": "Email has already been taken"}])
        if "tags" in values:
            values["tags"] = _tags(values["tags"])
        return values


def _tags(value: Iterable[str] | str) -> list[str]:
    items = value.split(",") if isinstance(value, str) else list(value)
    return sorted({str(tag).strip() for tag in items if str(tag).strip()})


def _matches(record: CustomerRecord, name: str | None, value: str) -> bool:
    if name == "email":
        return (record.email or "").lower() == value
    if name == "first_name":
        return (record.first_name or "").lower() == value
    if name == "last_name":
        return (record.last_name or "").lower() == value
    if name == "tag":
        return value in (tag.lower() for tag in record.tags)
    if name == "id":
        return str(record.id) == value
    if name is None:
        text = " ".join(filter(None, (record.first_name, record.last_name, record.email)))
        return value in text.lower()
    return True  # Shopify ignores a term on a field it cannot search
