"""The delivery log: one row per (shop, webhook id), upserted on every attempt.

An `in_progress` attempt only reports on the delivery: it adds to `attempts`
and leaves the outcome. A `duplicate` says the claim is completed: it leaves
`processed` alone but replaces `failed` or `in_progress` (the attempt that
completed the claim may have died before its row was written). A `failed`
attempt never overwrites a settled delivery (a slow failure racing a faster
retry). The body is kept only while the delivery is failed, so `replay` can
run it again.

Once `start()`ed, attempts are written by a background task in batches, one
transaction per FLUSH_DELAY (a synchronous upsert per request cost several
times the rest of the request); reads of this process flush first, `close()`
flushes the rest. The claims in the store, not this log, decide what runs.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, case, delete, func, literal, literal_column, or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine

from ._tasks import stop
from .db import data_requests, deliveries
from .webhooks import Delivery

__all__ = ["OUTCOMES", "DeliveryLog", "DeliveryRow"]

OUTCOMES = ("processed", "duplicate", "in_progress", "failed", "rejected", "ignored", "conflict")
#: Outcomes that say the delivery's claim is completed.
_SETTLED = ("processed", "conflict", "duplicate")
MAX_PAGE = 1000
#: Seconds the writer waits to gather a batch; the most rows it keeps after a failure.
FLUSH_DELAY = 0.05
MAX_PENDING = 50_000

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class DeliveryRow:
    """A row of the log, in the shape `GET /api/webhooks` answers."""

    id: int
    shop: str
    webhook_id: str
    topic: str
    event_id: str | None
    api_version: str | None
    triggered_at: str | None
    received_at: float
    attempts: int
    outcome: str
    duration_ms: float | None
    error: str | None
    has_body: bool

    def as_json(self) -> dict[str, Any]:
        return {
            "webhookId": self.webhook_id,
            "eventId": self.event_id,
            "shop": self.shop,
            "topic": self.topic,
            "apiVersion": self.api_version,
            "triggeredAt": self.triggered_at,
            "receivedAt": _iso(self.received_at),
            "outcome": self.outcome,
            "attempts": self.attempts,
            "durationMs": None if self.duration_ms is None else round(self.duration_ms, 3),
            "error": self.error,
        }


def _iso(epoch: float) -> str:
    seconds = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(epoch))
    return f"{seconds}.{int((epoch % 1) * 1000):03d}Z"


def subject_of(delivery: Delivery) -> str | None:
    """The customer id a delivery is about (`id`, or `customer.id` of compliance topics)."""
    payload = delivery.payload
    if not isinstance(payload, dict) or not delivery.topic.startswith("customers/"):
        return None
    value = payload.get("id")
    customer = payload.get("customer")
    if value is None and isinstance(customer, dict):
        value = customer.get("id")
    return None if value is None else str(value)[:64]


class DeliveryLog:
    """Reads and writes the delivery log in the app database."""

    def __init__(self, engine: AsyncEngine, *, clock: Callable[[], float] = time.time) -> None:
        self.engine = engine
        self.clock = clock
        dialect = engine.dialect.name
        self._insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
        self._upsert = self._upsert_statement()
        self._pending: list[dict[str, Any]] = []
        self._wake = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    def start(self) -> None:
        """Write attempts from a background task from now on (call inside the event loop)."""
        if self._writer is None:
            self._writer = asyncio.create_task(self._write_batches())

    async def close(self) -> None:
        """Stop the writer and write what is pending."""
        writer, self._writer = self._writer, None
        await stop(writer)
        await self.flush()

    async def _write_batches(self) -> None:
        while True:
            await self._wake.wait()
            await asyncio.sleep(FLUSH_DELAY)
            try:
                await self.flush()
            except Exception as exc:
                logger.warning("could not write %d delivery-log rows: %s", len(self._pending), exc)
                await asyncio.sleep(1.0)

    async def flush(self) -> None:
        """Write every pending attempt, in order, in one transaction."""
        async with self._lock:
            self._wake.clear()
            batch, self._pending = self._pending, []
            if not batch:
                return
            try:
                async with self.engine.begin() as conn:
                    await conn.execute(self._upsert, batch)
            except BaseException:
                self._pending[:0] = batch[-MAX_PENDING:]  # kept for the next try
                raise

    def _upsert_statement(self) -> Any:
        """INSERT ... ON CONFLICT (shop, webhook_id) DO UPDATE, built once, run with values."""
        stmt = self._insert(deliveries)
        new = stmt.excluded
        c = deliveries.c

        # Constants inlined: executemany() refuses expanding IN parameters.
        def one_of(column: Any, names: tuple[str, ...]) -> Any:
            return or_(*(column == literal_column(f"'{name}'") for name in names))

        keep = one_of(new.outcome, ("in_progress",)) | (
            one_of(c.outcome, _SETTLED) & one_of(new.outcome, ("failed", "duplicate"))
        )
        return stmt.on_conflict_do_update(
            index_elements=[c.shop, c.webhook_id],
            set_={
                "attempts": c.attempts + 1,
                "updated_at": new.updated_at,
                "outcome": case((keep, c.outcome), else_=new.outcome),
                "duration_ms": case((keep, c.duration_ms), else_=new.duration_ms),
                "error": case((keep, c.error), else_=new.error),
                "body": case((keep, c.body), else_=new.body),
                "body_sha256": case((keep, c.body_sha256), else_=new.body_sha256),
                "event_id": func.coalesce(c.event_id, new.event_id),
            },
        )

    async def record(
        self,
        delivery: Delivery,
        outcome: str,
        *,
        duration: float | None = None,
        error: str | None = None,
    ) -> None:
        """Upsert the delivery's row for one attempt (soon, once `start()`ed)."""
        if outcome not in OUTCOMES:
            raise ValueError(f"outcome must be one of {OUTCOMES}, not {outcome!r}")
        now = self.clock()
        values = {
            "shop": delivery.shop,
            "webhook_id": delivery.webhook_id,
            "topic": delivery.topic,
            "event_id": delivery.event_id,
            "api_version": delivery.api_version,
            "triggered_at": delivery.triggered_at,
            "received_at": now,
            "updated_at": now,
            "attempts": 1,
            "outcome": outcome,
            "duration_ms": None if duration is None else duration * 1000,
            "error": error,
            "body_sha256": delivery.body_sha256,
            "body": delivery.body if outcome == "failed" else None,
            "subject": subject_of(delivery),
        }
        self._pending.append(values)
        if self._writer is None:
            await self.flush()
        else:
            self._wake.set()

    async def page(
        self,
        *,
        shop: str | None = None,
        topic: str | None = None,
        outcome: str | None = None,
        limit: int = 50,
        cursor: int | None = None,
    ) -> tuple[list[DeliveryRow], int | None]:
        """Newest first; returns (rows, cursor of the next page or None)."""
        await self.flush()
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_PAGE:
            raise ValueError(f"limit must be an int from 1 to {MAX_PAGE}")
        c = deliveries.c
        conditions = []
        for column, value in ((c.shop, shop), (c.topic, topic), (c.outcome, outcome)):
            if value is not None:
                conditions.append(column == value)
        if cursor is not None:
            conditions.append(c.id < cursor)
        query = (
            select(*_ROW_COLUMNS)
            .where(and_(True, *conditions))
            .order_by(c.id.desc())
            .limit(limit + 1)
        )
        async with self.engine.connect() as conn:
            found = (await conn.execute(query)).all()
        rows = [_row(row) for row in found[:limit]]
        return rows, (rows[-1].id if len(found) > limit else None)

    async def find(
        self, webhook_id: str, shop: str | None = None
    ) -> list[tuple[DeliveryRow, bytes | None]]:
        """Every row with this webhook id (one per shop), with its stored body."""
        await self.flush()
        c = deliveries.c
        query = select(*_ROW_COLUMNS, c.body).where(c.webhook_id == webhook_id)
        if shop is not None:
            query = query.where(c.shop == shop)
        async with self.engine.connect() as conn:
            found = (await conn.execute(query.order_by(c.id))).all()
        return [(_row(row[:-1]), row[-1]) for row in found]

    async def headers_of(self, shop: str, webhook_id: str) -> dict[str, str]:
        """The headers a replay rebuilds its delivery from (the signature is not kept)."""
        rows = await self.find(webhook_id, shop)
        if not rows:
            return {}
        row = rows[0][0]
        headers = {"x-shopify-topic": row.topic, "x-shopify-shop-domain": row.shop}
        headers["x-shopify-webhook-id"] = row.webhook_id
        for name, value in (
            ("x-shopify-event-id", row.event_id),
            ("x-shopify-api-version", row.api_version),
            ("x-shopify-triggered-at", row.triggered_at),
        ):
            if value is not None:
                headers[name] = value
        return headers

    async def prune(self, older_than: float) -> int:
        """Delete rows last touched more than `older_than` seconds ago; returns how many."""
        await self.flush()
        cutoff = self.clock() - older_than
        async with self.engine.begin() as conn:
            result = await conn.execute(delete(deliveries).where(deliveries.c.updated_at < cutoff))
        return int(result.rowcount or 0)

    async def redact(
        self, shop: str, customer: str | None = None, *, keep: str | None = None
    ) -> int:
        """Delete a customer's rows (or all the shop's), data requests too, except `keep`'s row."""
        await self.flush()
        c = deliveries.c
        stmt = delete(deliveries).where(c.shop == shop)
        if customer is not None:
            stmt = stmt.where(c.subject == customer)
        if keep is not None:
            stmt = stmt.where(c.webhook_id != keep)
        requests = delete(data_requests).where(data_requests.c.shop == shop)
        if customer is not None:
            requests = requests.where(data_requests.c.customer_id == customer)
        async with self.engine.begin() as conn:
            result = await conn.execute(stmt)
            await conn.execute(requests)
        return int(result.rowcount or 0)

    async def record_data_request(self, delivery: Delivery) -> None:
        """Keep a customers/data_request for the merchant to answer; once per delivery."""
        payload = delivery.payload
        customer = payload.get("customer") if isinstance(payload.get("customer"), dict) else {}
        request = (
            payload.get("data_request") if isinstance(payload.get("data_request"), dict) else {}
        )
        stmt = self._insert(data_requests).values(
            shop=delivery.shop,
            webhook_id=delivery.webhook_id,
            request_id=_text(request.get("id")),
            customer_id=_text(customer.get("id")),
            email=_text(customer.get("email")),
            orders_requested=json.dumps(payload.get("orders_requested") or []),
            received_at=self.clock(),
        )
        stmt = stmt.on_conflict_do_nothing(index_elements=["shop", "webhook_id"])
        async with self.engine.begin() as conn:
            await conn.execute(stmt)

    async def data_requests(self, shop: str) -> list[dict[str, Any]]:
        c = data_requests.c
        query = select(data_requests).where(c.shop == shop).order_by(c.id)
        async with self.engine.connect() as conn:
            return [dict(row._mapping) for row in (await conn.execute(query)).all()]

    async def ping(self) -> None:
        """A trivial query: raises when the database does not answer."""
        async with self.engine.connect() as conn:
            await conn.execute(select(literal(1)))


def _row(values: Any) -> DeliveryRow:
    names = DeliveryRow.__dataclass_fields__
    return DeliveryRow(**dict(zip(names, values, strict=True)))


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


_c = deliveries.c
_ROW_COLUMNS = (
    _c.id,
    _c.shop,
    _c.webhook_id,
    _c.topic,
    _c.event_id,
    _c.api_version,
    _c.triggered_at,
    _c.received_at,
    _c.attempts,
    _c.outcome,
    _c.duration_ms,
    _c.error,
    _c.body.is_not(None),
)
