"""Group commit: the writes that concurrent tasks make in one loop iteration share a commit.

A SQLite commit costs far more than the statement it commits (BEGIN, the WAL frames
of every touched page, the wal-index update), so a service whose tasks each write
once pays mostly for commits. `GroupCommit.write` runs a write at once, as one
statement or one IMMEDIATE transaction, unless another task has already written
in this loop iteration (or writes are queued): then the write waits for the next
iteration, where everything queued by then is committed in one transaction.

- A task that writes alone, or one write after another, never waits: its writes
  run at once, exactly as without grouping.
- Each write still commits whole or not at all, and in the order it was made; its
  caller returns only once it is committed.
- A write whose caller is cancelled before its group commits is not made.
- A failure that is not the lock (a full disk, say) rolls the group back, and
  each of its writes then runs alone, so it fails only the write at fault.
- While another process holds the file's lock the group waits for it with awaits
  (`_sqlite_wait.retry`), up to the store's busy timeout, and writes made
  meanwhile join it.
- Groups form on one event loop, the first that writes (a later one once that is
  closed); a store also used from another thread's loop runs those writes alone.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from . import _sqlite_schema as schema
from ._sqlite_wait import Locked, retry
from .errors import KVBackendError

__all__ = ["GroupCommit"]


@dataclass(slots=True)
class _Write:
    sql: str
    params: Any  # a tuple, or a list of tuples for executemany
    many: bool
    rows: int  # rows it writes, for the checkpointer
    sweeps: bool  # counts towards the expired-row sweep (puts do, deletes do not)
    future: asyncio.Future[int] | None = None


def _execute(conn: sqlite3.Connection, write: _Write) -> int:
    if write.many:
        return conn.executemany(write.sql, write.params).rowcount
    return conn.execute(write.sql, write.params).rowcount


def _alone(write: _Write) -> Callable[[sqlite3.Connection], int]:
    """The store op of one write: one statement, or one transaction over many rows."""

    def op(conn: sqlite3.Connection) -> int:
        if not write.many:
            return _execute(conn, write)
        with schema.transaction(conn):
            return _execute(conn, write)

    return op


def _together(group: list[_Write]) -> Callable[[sqlite3.Connection], list[int]]:
    """The store op of a group: every write in one IMMEDIATE transaction (a group of
    one as that write alone: one statement commits itself, no BEGIN ... COMMIT)."""

    def op(conn: sqlite3.Connection) -> list[int]:
        if len(group) == 1:
            return [_alone(group[0])(conn)]
        with schema.transaction(conn):
            return [_execute(conn, write) for write in group]

    return op


class GroupCommit:
    """The write path of one SQLite store (see the module docstring).

    It runs its ops through the store's own `attempt` (one try under the connection's
    lock: `Locked` if another connection holds the file, else the store's
    KVBackendError) and `run` (the same, waiting while locked, up to `busy_timeout`);
    `locked` is the store's error for a lock held past that, and `committed(rows,
    sweep_rows)` is told after every commit (the store's checkpoints and sweeps hang
    on it).
    """

    def __init__(
        self,
        *,
        attempt: Callable[[Callable[[sqlite3.Connection], Any]], Any],
        run: Callable[[Callable[[sqlite3.Connection], int]], Awaitable[int]],
        busy_timeout: float,
        locked: Callable[[BaseException], KVBackendError],
        committed: Callable[[int, int], None],
    ) -> None:
        self._attempt = attempt
        self._run = run
        self._busy_timeout = busy_timeout
        self._locked = locked
        self._committed = committed
        self._queue: list[_Write] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        #: The task that wrote at once in this loop iteration (None: none did yet).
        self._writer: asyncio.Task[Any] | None = None
        self._waiting: asyncio.Task[None] | None = None  # the group waiting for the lock

    async def write(
        self, sql: str, params: Any, *, many: bool = False, rows: int = 1, sweeps: bool = True
    ) -> int:
        """Run one write statement (`many`: over a list of rows); returns the rows it changed."""
        write = _Write(sql, params, many, rows, sweeps)
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            if self._loop is not None and not self._loop.is_closed():
                # Another thread's loop groups this connection's writes: no mixing (a
                # future may only be resolved on its own loop). Each write runs alone.
                return await self._at_once(write)
            self._loop, self._writer = loop, None
        task = asyncio.current_task(loop)
        if not self._queue and self._waiting is None and self._writer in (None, task):
            if self._writer is None:
                self._writer = task
                loop.call_soon(self._end_iteration)
            return await self._at_once(write)
        # Queued: the writer's `_end_iteration`, or the group waiting for the lock, takes it.
        write.future = loop.create_future()
        self._queue.append(write)
        return await write.future

    async def drain(self) -> None:
        """Commit what is queued now and wait for a group that waits for the lock."""
        self._flush()
        while self._waiting is not None:
            await asyncio.shield(self._waiting)

    def _end_iteration(self) -> None:
        self._writer = None
        self._flush()

    async def _at_once(self, write: _Write) -> int:
        """One write now, through the store's `run` (which waits while the file is locked)."""
        changed = await self._run(_alone(write))
        self._tell(write)
        return changed

    def _tell(self, *writes: _Write) -> None:
        """Tell the store a commit of these writes happened."""
        self._committed(sum(w.rows for w in writes), sum(w.rows for w in writes if w.sweeps))

    def _flush(self) -> None:
        if self._waiting is not None or not self._queue:
            return
        try:
            self._commit_queue()
        except Locked:
            assert self._loop is not None
            self._waiting = self._loop.create_task(self._wait_for_lock())

    def _commit_queue(self) -> None:
        """Commit the live queued writes in one transaction; Locked leaves them queued."""
        group = [write for write in self._queue if not _cancelled(write)]
        self._queue = []
        if not group:
            return
        try:
            changed = self._attempt(_together(group))
        except Locked:
            self._queue[:0] = group
            raise
        except KVBackendError as exc:
            if len(group) == 1:
                _reject(group[0], exc)
            else:
                self._one_by_one(group)
            return
        except Exception as exc:  # not SQLite's: no write of the group may hang on it
            for write in group:
                _reject(write, exc)
            return
        self._tell(*group)
        for write, count in zip(group, changed, strict=True):
            _resolve(write, count)

    def _one_by_one(self, group: list[_Write]) -> None:
        """After a group failed for another reason than the lock: each write alone, so
        only the one at fault fails."""
        for write in group:
            try:
                count = self._attempt(_alone(write))
            except Locked as locked:
                _reject(write, self._locked(locked.__cause__ or locked))
            except Exception as exc:  # KVBackendError, or anything unforeseen: this write's
                _reject(write, exc)
            else:
                self._tell(write)
                _resolve(write, count)

    async def _wait_for_lock(self) -> None:
        try:
            await retry(self._commit_queue, self._busy_timeout)
        except Locked as still:
            cause = still.__cause__ or still
            group, self._queue = self._queue, []
            for write in group:
                _reject(write, self._locked(cause))
        except BaseException:
            group, self._queue = self._queue, []
            for write in group:
                if write.future is not None:
                    write.future.cancel()
            raise
        finally:
            self._waiting = None
            if self._queue and self._loop is not None:
                self._loop.call_soon(self._flush)


def _cancelled(write: _Write) -> bool:
    return write.future is not None and write.future.done()


def _resolve(write: _Write, count: int) -> None:
    if write.future is not None and not write.future.done():
        write.future.set_result(count)


def _reject(write: _Write, error: BaseException) -> None:
    if write.future is not None and not write.future.done():
        write.future.set_exception(error)
