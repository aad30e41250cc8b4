"""Waiting for SQLite's write lock without freezing the event loop.

SQLite's own busy handler sleeps inside C on the calling thread: on an event loop
that stops every other task for as long as another process holds the lock (up to
the whole busy timeout). The store's connections therefore have no busy timeout:
an attempt that finds the file locked fails at once with SQLITE_BUSY, and
`retry` tries it again, first after a few sub-millisecond sleeps (a write holds
the lock for tens of microseconds, so most waits end there, and sooner than
SQLite's own first 1 ms sleep), then with `asyncio.sleep` backing off to
`PAUSE_MAX` until the store's busy_timeout is spent.
"""

from __future__ import annotations

import asyncio
import random
import sqlite3
import time
from collections.abc import Callable
from typing import TypeVar

__all__ = ["Locked", "is_busy", "retry"]

_T = TypeVar("_T")

#: Blocking sleeps before the first await: 1.17 ms in all, the most the loop waits.
SPIN_PAUSES = (0.00002, 0.00005, 0.0001, 0.0002, 0.0004, 0.0004)
#: Awaited pauses double from PAUSE_MIN to PAUSE_MAX (each with ±50% jitter).
PAUSE_MIN = 0.001
PAUSE_MAX = 0.016


class Locked(Exception):
    """An attempt found the database locked; `__cause__` is SQLite's error."""


def is_busy(exc: sqlite3.Error) -> bool:
    """SQLITE_BUSY and its extended codes (BUSY_SNAPSHOT, BUSY_RECOVERY, ...)."""
    code: int = getattr(exc, "sqlite_errorcode", 0)
    return code & 0xFF == sqlite3.SQLITE_BUSY


async def retry(attempt: Callable[[], _T], timeout: float) -> _T:
    """Call `attempt` until it stops raising Locked; re-raise the last Locked after `timeout`."""
    deadline = time.monotonic() + timeout
    for pause in SPIN_PAUSES:
        if time.monotonic() + pause >= deadline:
            break
        time.sleep(pause)
        try:
            return attempt()
        except Locked:
            pass
    pause = PAUSE_MIN
    while True:
        left = deadline - time.monotonic()
        if left > 0:
            await asyncio.sleep(min(left, pause * random.uniform(0.5, 1.5)))
        try:
            return attempt()
        except Locked:
            if left <= 0:
                raise
        pause = min(PAUSE_MAX, pause * 2)
