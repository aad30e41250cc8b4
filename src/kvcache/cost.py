"""What the observed store traffic would cost on Workers KV (Free, Paid) and on D1.

Prices and limits are data (`PRICES`, read from Cloudflare's pages on the date it
carries): one edit here changes every projection. `project(usage)` turns the
operations counted over a window (a `kvcache.Meter`'s buckets, summed) into a
30-day month and prices it; its JSON is what `GET /api/cost` and
`kvcache cost --json` answer (see docs/cost.md).

Rules: monthly = observed × 30 days / observed seconds; the Free plan's daily
limits are compared with observed × 1 day / observed seconds; stored bytes are the
latest sample, not scaled. On D1 a point read is one row read, a listing reads the
rows it returns (at least one), and a write or a delete changes one row.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "OPERATIONS",
    "PRICES",
    "D1Prices",
    "KVPrices",
    "Prices",
    "SHORT_WINDOW",
    "Usage",
    "describe_seconds",
    "parse_window",
    "project",
]

DAY = 86400.0
MONTH = 30 * DAY
GB = 1e9  # Cloudflare's GB is 10^9 bytes
#: The four billed operations, as the meter names them -> as the projection names them.
OPERATIONS = {"read": "reads", "write": "writes", "delete": "deletes", "list": "lists"}


@dataclass(frozen=True)
class KVPrices:
    """Workers KV: Free's daily limits, Paid's monthly inclusions and overage prices."""

    free_daily: Mapping[str, float]
    free_stored_gb: float
    paid_minimum_usd: float
    paid_included: Mapping[str, float]
    paid_usd_per_million: Mapping[str, float]
    paid_stored_gb_included: float
    paid_usd_per_gb_month: float


@dataclass(frozen=True)
class D1Prices:
    """D1 on Workers Paid: rows read and written, storage."""

    included_rows_read: float
    included_rows_written: float
    usd_per_million_rows_read: float
    usd_per_million_rows_written: float
    stored_gb_included: float
    usd_per_gb_month: float


@dataclass(frozen=True)
class Prices:
    read_on: str
    source: str
    workers_kv: KVPrices
    d1: D1Prices


#: Read 2026-12 from developers.cloudflare.com /kv/platform/pricing, /kv/platform/limits,
#: /d1/platform/pricing (spec/pricing.md).
PRICES = Prices(
    read_on="2026-12",
    source="developers.cloudflare.com/kv/platform/pricing, /d1/platform/pricing",
    workers_kv=KVPrices(
        free_daily={"reads": 100_000, "writes": 1_000, "deletes": 1_000, "lists": 1_000},
        free_stored_gb=1.0,
        paid_minimum_usd=5.0,
        paid_included={
            "reads": 10_000_000,
            "writes": 1_000_000,
            "deletes": 1_000_000,
            "lists": 1_000_000,
        },
        paid_usd_per_million={"reads": 0.50, "writes": 5.00, "deletes": 5.00, "lists": 5.00},
        paid_stored_gb_included=1.0,
        paid_usd_per_gb_month=0.50,
    ),
    d1=D1Prices(
        included_rows_read=25_000_000_000,
        included_rows_written=50_000_000,
        usd_per_million_rows_read=0.001,
        usd_per_million_rows_written=1.00,
        stored_gb_included=5.0,
        usd_per_gb_month=0.75,
    ),
)


@dataclass
class Usage:
    """Operations observed over `window_seconds`: counts by (op, family), and stored bytes.

    `op` is the meter's name: read, write, delete, list, rapid_write (writes to a
    key less than 1 s after the previous one), list_key (keys a listing returned).
    """

    window_seconds: float
    counts: dict[tuple[str, str], float] = field(default_factory=dict)
    stored_bytes: int | None = None

    def total(self, op: str) -> float:
        return sum(n for (name, _), n in self.counts.items() if name == op)


#: A window shorter than this gets a `short_window` warning with its projection.
SHORT_WINDOW = 3600.0
_WINDOW = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*")
_UNITS = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": DAY}


def parse_window(text: str) -> float:
    """Seconds in a window such as "24h", "90m", "7d" or "3600"; ValueError otherwise."""
    found = _WINDOW.fullmatch(text) if isinstance(text, str) else None
    if found is None:
        raise ValueError(f"window must look like 24h, 90m, 7d or 3600s, not {text!r}")
    seconds = float(found.group(1)) * _UNITS[found.group(2)]
    if not 60 <= seconds <= 366 * DAY:
        raise ValueError(f"window must be from 1 minute to 366 days, not {text!r}")
    return seconds


def _overage(count: float, included: float, per_million: float) -> float:
    return max(0.0, count - included) / 1e6 * per_million


def _money(value: float) -> float:
    return round(value, 4)


def project(usage: Usage, prices: Prices = PRICES) -> dict[str, Any]:
    """The projection as JSON (the shape of DESIGN.md's `GET /api/cost`)."""
    seconds = max(0.0, usage.window_seconds)
    month = MONTH / seconds if seconds else 0.0
    day = DAY / seconds if seconds else 0.0
    observed = {name: usage.total(op) for op, name in OPERATIONS.items()}
    monthly = {name: n * month for name, n in observed.items()}
    daily = {name: n * day for name, n in observed.items()}
    stored = usage.stored_bytes
    stored_gb = (stored or 0) / GB
    kv = prices.workers_kv

    over = [name for name, n in daily.items() if n > kv.free_daily[name]]
    if stored_gb > kv.free_stored_gb:
        over.append("stored_bytes")
    by_op = {
        name: _overage(monthly[name], kv.paid_included[name], kv.paid_usd_per_million[name])
        for name in observed
    }
    storage_usd = max(0.0, stored_gb - kv.paid_stored_gb_included) * kv.paid_usd_per_gb_month
    kv_usage = sum(by_op.values()) + storage_usd

    d1 = prices.d1
    rows_read = (observed["reads"] + max(usage.total("list_key"), observed["lists"])) * month
    rows_written = (observed["writes"] + observed["deletes"]) * month
    d1_usage = (
        _overage(rows_read, d1.included_rows_read, d1.usd_per_million_rows_read)
        + _overage(rows_written, d1.included_rows_written, d1.usd_per_million_rows_written)
        + max(0.0, stored_gb - d1.stored_gb_included) * d1.usd_per_gb_month
    )
    return {
        "window_seconds": round(seconds, 3),
        "observed": {**{k: round(v) for k, v in observed.items()}, "stored_bytes": stored},
        "monthly": {**{k: round(v) for k, v in monthly.items()}, "stored_bytes": stored},
        "workers_kv": {
            "free": {
                "fits": not over,
                "over": over,
                "daily": {k: round(v) for k, v in daily.items()},
            },
            "paid": {
                "usage_usd": _money(kv_usage),
                "total_usd": _money(kv.paid_minimum_usd + kv_usage),
                "by_operation_usd": {k: _money(v) for k, v in by_op.items()}
                | {"stored_bytes": _money(storage_usd)},
            },
        },
        "d1": {
            "paid": {
                "usage_usd": _money(d1_usage),
                "total_usd": _money(kv.paid_minimum_usd + d1_usage),
                "rows_read": round(rows_read),
                "rows_written": round(rows_written),
            }
        },
        "drivers": _drivers(usage, month, by_op),
        "warnings": _warnings(usage, daily, over, kv, stored_gb),
        "prices_read_on": prices.read_on,
    }


def _drivers(usage: Usage, month: float, by_op: Mapping[str, float]) -> dict[str, Any]:
    """What pushes the bill: each operation's overage, and each family's share of it."""
    operations = [
        (_money(by_op[name]), round(usage.total(op) * month), name)
        for op, name in OPERATIONS.items()
    ]
    operations.sort(key=lambda row: (-row[0], -row[1]))
    families = []
    for (op, family), n in usage.counts.items():
        if op in OPERATIONS:
            total = usage.total(op)
            share = by_op[OPERATIONS[op]] * n / total if total else 0.0
            families.append((_money(share), round(n * month), family, OPERATIONS[op]))
    families.sort(key=lambda row: (-row[0], -row[1], row[2]))
    return {
        "operations": [
            {"operation": name, "monthly": monthly, "usd": usd} for usd, monthly, name in operations
        ],
        "families": [
            {"family": family, "operation": name, "monthly": monthly, "usd": usd}
            for usd, monthly, family, name in families
        ],
    }


def _warnings(
    usage: Usage, daily: Mapping[str, float], over: list[str], kv: KVPrices, stored_gb: float
) -> list[dict[str, str]]:
    warnings = []
    for name in over:
        if name == "stored_bytes":
            limit = kv.free_stored_gb
            message = f"{stored_gb:.2f} GB stored; the Workers KV Free plan holds {limit:g} GB"
        else:
            message = (
                f"{daily[name]:,.0f} {name} a day at the observed rate; the Workers KV Free "
                f"plan allows {kv.free_daily[name]:,.0f} (operations past it fail)"
            )
        warnings.append({"code": f"free_{name}_over_daily_limit", "message": message})
    rapid = usage.total("rapid_write")
    if rapid:
        families = sorted({family for (op, family) in usage.counts if op == "rapid_write"})
        warnings.append(
            {
                "code": "same_key_writes_over_1_per_second",
                "message": (
                    f"{rapid:,.0f} writes came less than 1 s after a write to the same key "
                    f"(families: {', '.join(families)}); Workers KV rejects more than one "
                    "write per second to a key (429)"
                ),
            }
        )
    if not usage.window_seconds:
        warnings.append(
            {"code": "no_data", "message": "no store operations recorded yet in the window"}
        )
    elif usage.window_seconds < SHORT_WINDOW:
        warnings.append(
            {
                "code": "short_window",
                "message": (
                    f"only {describe_seconds(usage.window_seconds)} observed: a month scaled "
                    "from so short a stretch takes its burst for the steady rate"
                ),
            }
        )
    return warnings


def describe_seconds(seconds: float) -> str:
    """`42 s`, `12.5 min`, `3.20 h` or `2.0 days`: a window as a person reads it."""
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.1f} min"
    if seconds < 2 * DAY:
        return f"{seconds / 3600:.2f} h"
    return f"{seconds / DAY:.1f} days"
