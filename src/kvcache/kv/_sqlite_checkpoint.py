"""Keeping a SQLite file's WAL short from a worker thread, never from an event loop.

SQLite's automatic checkpoint runs inside the COMMIT that pushes the WAL past 1,000
pages, on whichever connection made it: on a store that is the event loop's thread,
stopped for the ~10-30 ms of copying and two fsyncs. And it is PASSIVE: while other
processes keep writing it never catches up, so the WAL is never reset and grows
without bound (190 MB in 5 s under four writers at full speed, measured).

So the store's connections have `wal_autocheckpoint=0`, and each store has a
`Checkpointer`: every CHECK_EVERY rows written, the loop reads how many frames the WAL
holds (the wal-index header's mxFrame, one 4-byte `pread` of the `-shm` file), and past
WAL_FRAMES it hands a checkpoint to the store's worker thread, which has its own
connection and may block. The thread copies the WAL into the file without any lock
(PASSIVE), then takes the write lock for the few pages written meanwhile and restarts the
WAL (RESTART), then makes the first commit on the restarted WAL. Restarting is what bounds
it: the next frames overwrite the file from its start, so the file stays about WAL_LIMIT
bytes long. It is restarted rather than truncated: truncating a 16 MB file took 30-40 ms
here, with every writer of the file waiting for the lock meanwhile, where a restart holds
it for 1-3 ms. A checkpoint that finds the file busy or fails is counted and dropped: it
loses nothing (every commit is in the WAL already, and SQLite reads through the WAL), and
the next write past the limit asks again, in this process or any other that writes the
file.
"""

from __future__ import annotations

import os
import sqlite3
import struct
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

from ._sqlite_wait import is_busy

__all__ = [
    "BEHIND_FRAMES",
    "CHECK_EVERY",
    "WAL_FRAMES",
    "WAL_LIMIT",
    "Checkpointer",
]

_T = TypeVar("_T")

#: The WAL's length that asks for a checkpoint: 4,000 frames (SQLite's own default is
#: 1,000). Each restart holds the write lock for a moment, so fewer of them measured
#: better: 4 processes x 2,000 puts went 16,030 -> 19,321 puts/s (medians of 9
#: alternating rounds under shared load; BENCHMARKS.md).
WAL_FRAMES = 4000
#: The file's size at that length, with 4 KiB pages (a frame is a page and a 24-byte header).
WAL_LIMIT = WAL_FRAMES * (4096 + 24)
#: Past this many frames, writers pause after each write until it is restarted again.
BEHIND_FRAMES = 2 * WAL_FRAMES
#: Where the wal-index header (the `-shm` file's first bytes) keeps mxFrame, the number of
#: valid frames in the WAL, as a native-order u32 (sqlite.org/walformat.html).
_MX_FRAME = struct.Struct("=I")
_MX_FRAME_OFFSET = 16
#: How many rows written between two looks at the WAL's size (a look is one pread, ~1 µs).
CHECK_EVERY = 16
#: How long the thread waits for the write lock, and then (holding it) for older readers.
#: Short, since every writer waits meanwhile: a reader that keeps an old snapshot open
#: would stall them all.
LOCK_WAIT = 0.1
#: After a checkpoint that found the file busy, the next waits BACKOFF_MIN, doubling up to
#: BACKOFF_MAX while they stay busy (one long reader costs writers 0.1 s a second at most);
#: after one that found another connection checkpointing, PAUSE.
BACKOFF_MIN = 0.01
BACKOFF_MAX = 1.0
PAUSE = 0.005


def connect(path: str) -> sqlite3.Connection:
    """The thread's connection: autocommit, waiting in SQLite (it blocks only its thread)."""
    conn = sqlite3.connect(path, timeout=LOCK_WAIT, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA wal_autocheckpoint = 0")
    conn.execute("PRAGMA synchronous = NORMAL")
    return conn


class Checkpointer:
    """One file's checkpoints, run by one worker thread that the store also uses to open and
    close its connection (work that can take milliseconds: WAL recovery, the last close's
    checkpoint). `checkpoints`, `busy` and `failures` count what the thread did; `error` is the
    last failure."""

    def __init__(self, path: str, *, opener: Callable[[str], sqlite3.Connection] = connect) -> None:
        self._shm = f"{path}-shm"
        self._shm_fd: int | None = None
        self._path = path
        self.opener = opener
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="kvcache-sqlite")
        self._conn: sqlite3.Connection | None = None  # touched by the worker thread only
        self._pending: Future[None] | None = None
        self._guard = threading.Lock()
        self._rows = 0
        self._behind = False
        self._not_before = 0.0
        self._backoff = BACKOFF_MIN
        self.checkpoints = 0
        self.busy = 0
        self.failures = 0
        self.error: BaseException | None = None

    def submit(self, work: Callable[[], _T]) -> Future[_T]:
        """Run `work` on the worker thread (in order with the checkpoints)."""
        return self._thread.submit(work)

    def wrote(self, rows: int = 1) -> bool:
        """Called on the loop after a commit of `rows` rows; may start a checkpoint. True while
        the WAL is past BEHIND_FRAMES: the writer should pause (see `SQLiteStore._write`)."""
        self._rows += rows
        if self._rows < CHECK_EVERY:
            return self._behind
        self._rows = 0
        frames = self.frames()
        self._behind = frames >= BEHIND_FRAMES
        if frames >= WAL_FRAMES:
            self.request()
        return self._behind

    def frames(self) -> int:
        """How many frames the WAL holds now (0 without one: an in-memory file, say)."""
        try:
            if self._shm_fd is None:
                self._shm_fd = os.open(self._shm, os.O_RDONLY)
            header = os.pread(self._shm_fd, _MX_FRAME.size, _MX_FRAME_OFFSET)
        except OSError:
            self._close_shm()
            return 0
        if len(header) < _MX_FRAME.size:
            return 0
        frames: int = _MX_FRAME.unpack(header)[0]
        return frames

    def _close_shm(self) -> None:
        fd, self._shm_fd = self._shm_fd, None
        if fd is not None:
            try:
                os.close(fd)
            except OSError:
                pass

    def request(self) -> Future[None] | None:
        """Start a checkpoint unless one is under way or the last found the file busy a moment
        ago; returns it (None if none was started)."""
        with self._guard:
            if self._pending is not None and not self._pending.done():
                return None
            if time.monotonic() < self._not_before:
                return None
            try:
                self._pending = self._thread.submit(self._checkpoint)
            except RuntimeError:  # closed: the store is going away
                return None
            return self._pending

    def _checkpoint(self) -> None:
        """On the worker thread: copy, empty, restart the WAL; count any failure, never raise."""
        try:
            if self._conn is None:
                self._conn = self.opener(self._path)
            conn = self._conn
            busy, log, copied = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            if busy:  # another connection is checkpointing: it will empty the WAL
                return self._busy(PAUSE)
            if copied < log:  # a reader holds an older snapshot: RESTART would wait for it
                return self._busy(self._backoff)
            if conn.execute("PRAGMA wal_checkpoint(RESTART)").fetchone()[0]:
                return self._busy(self._backoff)
            self.checkpoints += 1
            self._backoff = BACKOFF_MIN
            self._restart(conn)
        except sqlite3.Error as exc:
            if is_busy(exc):
                return self._busy(self._backoff)
            self.failures += 1
            self.error = exc
            self._not_before = time.monotonic() + BACKOFF_MAX

    def _busy(self, pause: float) -> None:
        """Count a checkpoint that found the file busy; ask for the next after `pause`."""
        self.busy += 1
        self._not_before = time.monotonic() + pause
        if pause == self._backoff:
            self._backoff = min(BACKOFF_MAX, self._backoff * 2)

    @staticmethod
    def _restart(conn: sqlite3.Connection) -> None:
        """Make the first commit on the restarted WAL, which writes its header and fsyncs it.

        Only if the lock is free at once: a writer that got there first has done it.
        """
        conn.execute("PRAGMA busy_timeout = 0")
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            if not is_busy(exc):
                raise
            return
        finally:
            conn.execute(f"PRAGMA busy_timeout = {int(LOCK_WAIT * 1000)}")
        try:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            conn.execute(f"PRAGMA user_version = {int(version)}")  # same value, one page
            conn.execute("COMMIT")
        finally:
            if conn.in_transaction:
                conn.execute("ROLLBACK")

    def close(self, then: Callable[[], None]) -> Future[None]:
        """Close the thread's connection after any checkpoint under way, then run `then`
        (closing the store's own connection) on the thread; the thread ends after."""

        def finish() -> None:
            try:
                if self._conn is not None:
                    self._conn.close()
                    self._conn = None
            finally:
                try:
                    then()
                finally:
                    self._close_shm()

        with self._guard:
            try:
                done = self._thread.submit(finish)
            except RuntimeError:  # closed before: nothing is left to close
                done = Future()
                done.set_result(None)
            self._thread.shutdown(wait=False)
        return done
