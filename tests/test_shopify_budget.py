"""CostBudget on a fake clock: pacing, out-of-order reports, the bucket's cap, tiny deficits."""

from __future__ import annotations

import asyncio

from backends import FakeClock
from kvcache.shopify.budget import CostBudget, ThrottleStatus
from shopify_helpers import FakeSleep


def status(available: float, maximum: float = 10.0, rate: float = 2.0) -> ThrottleStatus:
    return ThrottleStatus(maximum, available, rate)


async def test_a_caller_waits_exactly_for_the_refill(clock: FakeClock) -> None:
    sleep = FakeSleep(clock)
    budget = CostBudget(clock=clock, sleep=sleep)
    await budget.reserve(4)  # the probe: nothing known yet
    budget.settle(4, status(1.0))
    await budget.reserve(4)
    assert sleep.calls == [1.5]  # (4 - 1) / 2 points a second


async def test_an_older_fuller_report_does_not_raise_the_level(clock: FakeClock) -> None:
    budget = CostBudget(clock=clock, sleep=FakeSleep(clock))
    await budget.reserve(1)
    budget.settle(1, status(2.0))
    budget.settle(0, status(9.0))  # answered late, counted before the last one
    assert budget.available() == 2.0
    clock.advance(1)
    assert budget.available() == 4.0  # time raises it


async def test_in_flight_reservations_never_exceed_the_bucket(clock: FakeClock) -> None:
    sleep = FakeSleep(clock)
    budget = CostBudget(clock=clock, sleep=sleep)
    await budget.reserve(1)
    budget.settle(1, status(10.0))
    for _ in range(2):
        await budget.reserve(5)
    third = asyncio.create_task(budget.reserve(5))
    for _ in range(20):
        await asyncio.sleep(0)
    assert not third.done()  # however much time passes, 10 points are in flight
    budget.settle(5, status(5.0))
    await asyncio.wait_for(third, 5)


async def test_a_deficit_below_the_clocks_resolution_does_not_hang(clock: FakeClock) -> None:
    clock.advance(1.8e9 - clock())  # where a float's step is about 2e-7 s
    budget = CostBudget(clock=clock, sleep=FakeSleep(clock))
    await budget.reserve(1)
    budget.settle(1, status(3.0 - 1e-9))
    await asyncio.wait_for(budget.reserve(3), 5)


def test_throttle_status_parsing() -> None:
    good = {"cost": {"throttleStatus": {"maximumAvailable": 2000.0, "currentlyAvailable": 1999,
                                        "restoreRate": 100.0}}}  # fmt: skip
    assert ThrottleStatus.parse(good) == ThrottleStatus(2000.0, 1999.0, 100.0)
    assert ThrottleStatus.parse({}) is None
    assert ThrottleStatus.parse({"cost": {"throttleStatus": {"maximumAvailable": "x"}}}) is None
    zero = {"cost": {"throttleStatus": {"maximumAvailable": 0, "currentlyAvailable": 0,
                                        "restoreRate": 1}}}  # fmt: skip
    assert ThrottleStatus.parse(zero) is None
