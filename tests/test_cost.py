"""The projection against bills computed by hand (spec/pricing.md's prices)."""

from __future__ import annotations

import pytest

from kvcache.cost import DAY, PRICES, SHORT_WINDOW, Usage, describe_seconds, parse_window, project

MONTH = 30 * DAY


def usage(window: float, stored: int | None = None, **ops: float) -> Usage:
    return Usage(window, {(op, "customer:email"): n for op, n in ops.items()}, stored)


def test_empty_history_costs_the_minimum_and_says_so() -> None:
    report = project(Usage(0.0))
    assert report["window_seconds"] == 0
    assert report["observed"] == {
        "reads": 0,
        "writes": 0,
        "deletes": 0,
        "lists": 0,
        "stored_bytes": None,
    }
    assert report["workers_kv"]["free"] == {
        "fits": True,
        "over": [],
        "daily": report["workers_kv"]["free"]["daily"],
    }
    assert report["workers_kv"]["paid"]["usage_usd"] == 0
    assert report["workers_kv"]["paid"]["total_usd"] == 5.0
    assert report["d1"]["paid"]["total_usd"] == 5.0
    assert [w["code"] for w in report["warnings"]] == ["no_data"]


def test_free_limits_crossed_and_paid_within_the_included() -> None:
    # One day: 150,000 reads (Free allows 100,000), 999 writes (fits), 1,001 deletes (over).
    report = project(usage(DAY, read=150_000, write=999, delete=1_001, list=10))
    free = report["workers_kv"]["free"]
    assert free["fits"] is False
    assert free["over"] == ["reads", "deletes"]
    assert report["monthly"]["reads"] == 4_500_000
    # 4.5 M reads, 29,970 writes, 30,030 deletes, 300 lists a month: all inside Paid's quotas.
    assert report["workers_kv"]["paid"] == {
        "usage_usd": 0.0,
        "total_usd": 5.0,
        "by_operation_usd": {
            "reads": 0.0,
            "writes": 0.0,
            "deletes": 0.0,
            "lists": 0.0,
            "stored_bytes": 0.0,
        },
    }
    codes = [w["code"] for w in report["warnings"]]
    assert codes == ["free_reads_over_daily_limit", "free_deletes_over_daily_limit"]


def test_paid_overage_by_hand() -> None:
    # Over one hour: 50,000 reads, 5,000 writes, 100 lists; 3 GB stored.
    report = project(usage(3600, stored=3_000_000_000, read=50_000, write=5_000, list=100))
    # A month is 720 hours: 36 M reads, 3.6 M writes, 72,000 lists.
    assert report["monthly"]["reads"] == 36_000_000
    assert report["monthly"]["writes"] == 3_600_000
    paid = report["workers_kv"]["paid"]
    # reads: (36 - 10) M × $0.50 = $13; writes: (3.6 - 1) M × $5 = $13; storage: 2 GB × $0.50.
    assert paid["by_operation_usd"]["reads"] == pytest.approx(13.0)
    assert paid["by_operation_usd"]["writes"] == pytest.approx(13.0)
    assert paid["by_operation_usd"]["lists"] == 0
    assert paid["by_operation_usd"]["stored_bytes"] == pytest.approx(1.0)
    assert paid["usage_usd"] == pytest.approx(27.0)
    assert paid["total_usd"] == pytest.approx(32.0)
    assert report["workers_kv"]["free"]["over"] == ["reads", "writes", "lists", "stored_bytes"]
    top = report["drivers"]["operations"][0]
    assert top["operation"] in ("reads", "writes") and top["usd"] == pytest.approx(13.0)


def test_d1_included_rows_then_overage() -> None:
    # Within D1's inclusions: 36 M rows read (25 bn included), 3.6 M written (50 M included).
    d1 = project(usage(3600, read=50_000, write=5_000))["d1"]["paid"]
    assert d1["rows_read"] == 36_000_000 and d1["rows_written"] == 3_600_000
    assert d1["usage_usd"] == 0 and d1["total_usd"] == 5.0
    # 100,000 writes and 20,000 deletes an hour: 86.4 M rows written a month, 36.4 M over.
    d1 = project(usage(3600, write=100_000, delete=20_000))["d1"]["paid"]
    assert d1["rows_written"] == 86_400_000
    assert d1["usage_usd"] == pytest.approx(36.4)
    assert d1["total_usd"] == pytest.approx(41.4)


def test_d1_listing_reads_the_rows_it_returned() -> None:
    report = project(Usage(MONTH, {("list", "shop"): 10, ("list_key", "shop"): 5_000}))
    assert report["d1"]["paid"]["rows_read"] == 5_000
    assert report["observed"]["lists"] == 10


def test_same_key_writes_warn_and_families_carry_their_share() -> None:
    counts: dict[tuple[str, str], float] = {
        ("write", "customer:email"): 3_000_000,
        ("write", "shop:config"): 1_000_000,
        ("rapid_write", "shop:config"): 12,
    }
    report = project(Usage(MONTH, counts))
    # 4 M writes: 3 M over the quota, $15, shared 3:1 between the families.
    families = report["drivers"]["families"]
    assert families[0] == {
        "family": "customer:email",
        "operation": "writes",
        "monthly": 3_000_000,
        "usd": pytest.approx(11.25),
    }
    assert families[1]["usd"] == pytest.approx(3.75)
    warning = next(
        w for w in report["warnings"] if w["code"] == "same_key_writes_over_1_per_second"
    )
    assert "12 writes" in warning["message"] and "shop:config" in warning["message"]


def test_one_price_edit_changes_every_projection() -> None:
    from dataclasses import replace

    cheaper = replace(
        PRICES,
        workers_kv=replace(
            PRICES.workers_kv,
            paid_usd_per_million={**PRICES.workers_kv.paid_usd_per_million, "reads": 0.25},
        ),
    )
    report = project(usage(3600, read=50_000), cheaper)
    assert report["workers_kv"]["paid"]["usage_usd"] == pytest.approx(6.5)
    assert report["prices_read_on"] == PRICES.read_on


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("24h", 86400), ("90m", 5400), ("7d", 604800), ("3600", 3600), ("120s", 120)],
)
def test_windows(text: str, seconds: float) -> None:
    assert parse_window(text) == seconds


@pytest.mark.parametrize("text", ["", "24x", "-1h", "1s", "400d", "h", "1e9"])
def test_bad_windows_say_what_they_want(text: str) -> None:
    with pytest.raises(ValueError, match="window must"):
        parse_window(text)


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [(12.4, "12 s"), (600, "10.0 min"), (3 * 3600, "3.00 h"), (3 * 86400, "3.0 days")],
)
def test_a_short_window_is_said_and_warned(seconds: float, shown: str) -> None:
    report = project(Usage(seconds, {("read", "customer:email"): 10.0}))
    codes = [warning["code"] for warning in report["warnings"]]
    assert ("short_window" in codes) == (seconds < SHORT_WINDOW)
    assert describe_seconds(seconds) == shown
