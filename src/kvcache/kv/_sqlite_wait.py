"""Waiting for SQLite's write lock without freezing the event loop.

SQLite's own busy handler sleeps inside C on the calling thread: on an event loop
that stops every other task for as long as another process holds the lock (up to
the whole busy timeout). The store's connections therefore have no busy timeout:
an attempt that finds the file locked fails at once with SQLITE_BUSY, and `retry`
tries it again after `asyncio.sleep` pauses that double from PAUSE_MIN to
PAUSE_MAX, until the store's busy_timeout is spent. Blocking sleeps before the
first await (as SQLite's handler does) were measured too: under four writers at
full speed they kept the loop busy three times as long (21% against 6.6%) for
no throughput gain beyond the noise.
"""

from __future__ import annotations

import asyncio
import random
import sqlite3
import time
from collections.abc import Callable
from typing import TypeVar

__all__ = ["Locked", "is_busy", "retry", "retry_blocking"]

_T = TypeVar("_T")

#: Awaited pauses double from PAUSE_MIN to PAUSE_MAX, each with ±50% jitter so that
#: waiting processes do not retry in step. A write lock is held for one commit, well under
#: a millisecond, so shorter pauses (they were 1 to 8 ms) get a waiting write in sooner;
#: four writers flat out still meet their figures with them (BENCHMARKS.md).
PAUSE_MIN = 0.0005
PAUSE_MAX = 0.004


class Locked(Exception):
    """An attempt found the database locked; `__cause__` is SQLite's error."""


def is_busy(exc: sqlite3.Error) -> bool:
    """SQLITE_BUSY and its extended codes (BUSY_SNAPSHOT, BUSY_RECOVERY, ...)."""
    code: int = getattr(exc, "sqlite_errorcode", 0)
    return code & 0xFF == sqlite3.SQLITE_BUSY


async def retry(attempt: Callable[[], _T], timeout: float) -> _T:
    """Call `attempt` until it stops raising Locked; re-raise the last Locked after `timeout`."""
    deadline = time.monotonic() + timeout
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


def retry_blocking(attempt: Callable[[], _T], timeout: float) -> _T:
    """`retry` for a worker thread, which may sleep: call `attempt` until it stops failing
    as busy (sqlite3's error, re-raised after `timeout`)."""
    deadline = time.monotonic() + timeout
    pause = PAUSE_MIN
    while True:
        try:
            return attempt()
        except sqlite3.Error as exc:
            left = deadline - time.monotonic()
            if not is_busy(exc) or left <= 0:
                raise
        time.sleep(min(left, pause * random.uniform(0.5, 1.5)))
        pause = min(PAUSE_MAX, pause * 2)
