"""The cost projection's input from the history: which minutes a window covers.

A window longer than the history reaches reports only the seconds actually
observed (so a projection from ten minutes of traffic is scaled from ten
minutes, not from a day); a shorter one leaves the older minutes out.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from backends import FakeClock
from kvcache.app.usage import load_usage, record
from kvcache.kv.meter import Meter
from kvcache.shopify.db import migrate, open_database
from kvcache.shopify.history import History

T0 = 1_780_000_020.0  # a minute's start


@pytest.fixture
async def history(tmp_path: Path) -> AsyncIterator[History]:
    engine = open_database(f"sqlite+aiosqlite:///{tmp_path}/app.db")
    await migrate(engine)
    try:
        yield History(engine)
    finally:
        await engine.dispose()


async def test_the_window_is_what_was_observed(history: History) -> None:
    clock = FakeClock(T0)
    meter = Meter(clock=clock)
    tally = meter.tally("CACHE")
    for _ in range(5):
        tally.read("customer:1")
    record(history, meter.drain())  # the service drains every 0.25 s
    clock.advance(120)
    for _ in range(3):
        tally.read("customer:2")
    tally.writes(["customer:2"])
    record(history, meter.drain())

    now = T0 + 600
    whole = await load_usage(history, 24 * 3600, now=now)
    assert whole.window_seconds == 600  # since the first minute, not 24 h
    assert (whole.total("read"), whole.total("write")) == (8, 1)

    recent = await load_usage(history, 490, now=now)  # from T0 + 110: the second minute on
    assert recent.window_seconds == 490
    assert (recent.total("read"), recent.total("write")) == (3, 1)


async def test_an_empty_history_observed_nothing(history: History) -> None:
    usage = await load_usage(history, 3600, now=T0)
    assert (usage.window_seconds, usage.counts, usage.stored_bytes) == (0.0, {}, None)
