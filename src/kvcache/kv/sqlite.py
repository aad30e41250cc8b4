"""The embedded default: one SQLite file, many namespaces, many processes.

Reads run sqlite3 directly on the event loop's thread: in WAL they never wait for
a lock, and a point read costs a few microseconds, less than a hop to a worker
thread would. Writes run there too, but never wait inside SQLite: the connection
has no busy timeout, and a write that finds another process holding the lock is
retried with `await` (`_sqlite_wait`) until `busy_timeout` is spent, so the loop
keeps serving other tasks meanwhile. Every write is one statement or one short
IMMEDIATE transaction, so nothing is ever half-written, and the writes concurrent
tasks make in one loop iteration share one commit (`_sqlite_batch`); the thread
lock that guards the connection is never held across an await. What can take milliseconds
(checkpoints, opening: WAL recovery and the schema, closing: the last connection's
checkpoint) runs on the store's worker thread (`_sqlite_checkpoint`).
"""

from __future__ import annotations

import asyncio
import math
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from typing import ClassVar, TypeVar

from . import _sqlite_schema as schema
from ._sqlite_batch import GroupCommit
from ._sqlite_checkpoint import Checkpointer
from ._sqlite_wait import Locked, is_busy, retry, retry_blocking
from ._url import DEFAULT_PATH, redact_url, sqlite_path, url_options
from .base import NOT_READY, Clock, KVStore, NotReady
from .errors import KVBackendError, KVConfigError
from .limits import Limits
from .meter import Meter
from .types import KeyInfo, Record
from .validation import decode_metadata

__all__ = ["DEFAULT_PATH", "SQLiteStore"]

SCHEMA_VERSION = schema.SCHEMA_VERSION
#: Every PURGE_EVERY_WRITES writes, one sweep looks at the next PURGE_SWEEP_ROWS rows of the
#: file (any namespace): 2 rows a write, so a pass outruns even a table that only grows,
#: at about 0.6 µs a write (a sweep of 512 rows costs ~150 µs).
PURGE_EVERY_WRITES = 256
PURGE_SWEEP_ROWS = 512
#: A write that finds the WAL past twice its limit (the checkpoint cannot get the lock from
#: writers at full speed) returns after this pause, in every process that writes the file.
BEHIND_PAUSE = 0.001

_T = TypeVar("_T")
_Op = Callable[[sqlite3.Connection], _T]

_GET = "SELECT value, expiration FROM kv WHERE namespace = ? AND key = ?"
_GET_ENTRY = "SELECT value, expiration, metadata FROM kv WHERE namespace = ? AND key = ?"
# Keys are bound one parameter each (at most 100): SQLite's JSON functions cut text at U+0000.
_GET_MANY = "SELECT key, value, expiration, metadata FROM kv WHERE namespace = ? AND key IN ({})"
#: The Record fields a row holds (key, value, expiration, metadata; not the caller's ttl).
_STORED = 4
_PUT = (
    "INSERT OR REPLACE INTO kv (namespace, key, value, expiration, metadata) VALUES (?, ?, ?, ?, ?)"
)
_PUT_IF_ABSENT = (
    "INSERT INTO kv (namespace, key, value, expiration, metadata) VALUES (?, ?, ?, ?, ?) "
    "ON CONFLICT (namespace, key) DO UPDATE SET value = excluded.value, "
    "expiration = excluded.expiration, metadata = excluded.metadata "
    "WHERE kv.expiration IS NOT NULL AND kv.expiration <= ?"
)
_DELETE = "DELETE FROM kv WHERE namespace = ? AND key = ?"
# length() of a BLOB reads its size from the row header, not the value's pages.
_STORED_BYTES = (
    "SELECT coalesce(sum(length(CAST(key AS BLOB)) + length(value) "
    "+ coalesce(length(CAST(metadata AS BLOB)), 0)), 0) FROM kv "
    "WHERE namespace = ? AND (expiration IS NULL OR expiration > ?)"
)
_DELETE_IF_EQUALS = (
    "DELETE FROM kv WHERE namespace = ? AND key = ? AND value = ? "
    "AND (expiration IS NULL OR expiration > ?)"
)
#: (a cursor past the prefix start: "key > ?" | else "key >= prefix") x (with an upper bound).
#: One lower bound only: given two, SQLite ranges the index on the first (often '') and
#: scans every key of the namespace below the prefix.
_LIST_SELECT = "SELECT key, expiration, metadata FROM kv WHERE namespace = ? AND key {} ? "
_LIST_TAIL = "AND (expiration IS NULL OR expiration > ?) ORDER BY key LIMIT ?"
_LISTS = {
    (after, bounded): _LIST_SELECT.format(">" if after else ">=")
    + ("AND key < ? " if bounded else "")
    + _LIST_TAIL
    for after in (True, False)
    for bounded in (True, False)
}


def prefix_upper_bound(prefix: str) -> str | None:
    """The smallest string above every string that starts with `prefix` (None: no bound).

    Code point order equals UTF-8 byte order, so bumping the last code point works.
    """
    chars = list(prefix)
    while chars:
        point = ord(chars.pop()) + 1
        if point == 0xD800:
            point = 0xE000
        if point <= 0x10FFFF:
            return "".join(chars) + chr(point)
    return None


class SQLiteStore(KVStore):
    """A namespace inside a SQLite file shared by any number of processes and threads.

    Open it with `kvcache.open_kv("sqlite:///...")` or `await SQLiteStore(path).open()`,
    which also put the file in WAL mode and create or upgrade its tables.
    `busy_timeout` is how long a write waits for another writer's lock (awaiting,
    never blocking the loop) before it fails with KVBackendError.
    """

    backend: ClassVar[str] = "sqlite"
    atomic: ClassVar[bool] = True

    def __init__(
        self,
        path: str = DEFAULT_PATH,
        *,
        namespace: str = "default",
        limits: Limits | None = None,
        clock: Clock = time.time,
        busy_timeout: float = 30.0,
        meter: Meter | None = None,
    ) -> None:
        super().__init__(namespace=namespace, limits=limits, clock=clock, meter=meter)
        self.path = path
        self.busy_timeout = busy_timeout
        self._lock = threading.RLock()
        self._writes = 0
        try:
            if path != ":memory:":
                os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
            # timeout=0: SQLITE_BUSY comes back at once and _run waits with await.
            self._conn = sqlite3.connect(
                path,
                timeout=0,
                isolation_level=None,
                check_same_thread=False,
                cached_statements=256,
            )
            # Commits never checkpoint on the loop: the worker thread does (_sqlite_checkpoint).
            self._conn.execute("PRAGMA wal_autocheckpoint = 0")
            # Reused by the hottest calls, under the lock; fetchall() runs each statement
            # to its end, so no read transaction outlives a call.
            self._cursor = self._conn.cursor()
        except (OSError, sqlite3.Error) as exc:
            raise KVBackendError(
                f"cannot open {path!r}: {exc}", backend=self.backend, cause=exc
            ) from exc
        self._checkpointer = Checkpointer(path)
        self._behind = False
        self._group = GroupCommit(
            attempt=self._attempt,
            run=self._run,
            busy_timeout=busy_timeout,
            locked=self._locked,
            committed=self._committed,
        )

    async def open(self) -> SQLiteStore:
        """Switch the file to WAL and create or upgrade its tables; returns the store.

        On the worker thread: the first read of a file recovers a WAL left by a process
        that died, and other openers may hold the lock; the loop runs on meanwhile.
        """
        try:
            await asyncio.wrap_future(self._checkpointer.submit(self._prepare))
        except sqlite3.Error as exc:
            await self._close()
            raise KVBackendError(
                f"cannot use {self.path!r}: {exc}", backend=self.backend, cause=exc
            ) from exc
        return self

    def _prepare(self) -> None:
        """WAL mode and tables, waiting up to busy_timeout (blocking: this is the worker thread).

        SQLite's busy handler waits for most locks; switching a new file to WAL while
        other openers read it fails as busy at once, and is tried again (`retry_blocking`).
        """

        def attempt() -> None:
            with self._lock:
                self._conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")
                try:
                    schema.enable_wal(self._conn)
                    schema.prepare(self._conn)
                finally:
                    self._conn.execute("PRAGMA busy_timeout = 0")

        retry_blocking(attempt, self.busy_timeout)

    def _fail(self, exc: BaseException) -> KVBackendError:
        return KVBackendError(f"{exc} ({self.path})", backend=self.backend, cause=exc)

    def _attempt(self, op: _Op[_T]) -> _T:
        """Run `op` once under the thread lock; Locked if another writer holds the file."""
        try:
            with self._lock:
                return op(self._conn)
        except sqlite3.Error as exc:
            if is_busy(exc):
                raise Locked from exc
            raise self._fail(exc) from exc

    async def _run(self, op: _Op[_T]) -> _T:
        """Run `op`; while the file is locked, retry it with awaits up to busy_timeout."""
        try:
            with self._lock:
                return op(self._conn)
        except sqlite3.Error as exc:
            failed = exc
        return await self._retry(failed, op)

    async def _retry(self, failed: sqlite3.Error, op: _Op[_T]) -> _T:
        """After `op` failed: raise, or, if only because the file was locked, wait and retry."""
        if not is_busy(failed):
            raise self._fail(failed) from failed
        try:
            return await retry(lambda: self._attempt(op), self.busy_timeout)
        except Locked as locked:
            cause = locked.__cause__ or locked
            raise self._locked(cause) from cause

    def _locked(self, cause: BaseException) -> KVBackendError:
        return KVBackendError(
            f"{cause}: another connection held the write lock for busy_timeout="
            f"{self.busy_timeout:g} s ({self.path})",
            backend=self.backend,
            cause=cause,
        )

    def _purge(self) -> None:
        """Sweep one bounded stretch for expired rows; skipped when the file is busy."""
        now = self.clock()

        def op(conn: sqlite3.Connection) -> int:
            with schema.transaction(conn):
                return schema.sweep(conn, now, PURGE_SWEEP_ROWS)

        try:
            self._attempt(op)
        except (Locked, KVBackendError):
            pass  # purging is housekeeping; a later write tries again

    def _peek_value(self, key: str) -> bytes | None | NotReady:
        """`get`'s fast path: the point read with no coroutine of its own, on a kept cursor.

        `fetchone()` is enough to end the statement: sqlite3 steps one row ahead and
        resets a statement that has no more, so no read snapshot outlives the call
        (a primary-key look-up has one row; tests/test_sqlite_store.py checks it).
        Any sqlite3 error (a lock, a failing disk) answers NOT_READY, so `_get_value`
        runs the read again and waits or raises as every other call does.
        """
        lock = self._lock
        lock.acquire()  # cheaper than `with` on this path
        try:
            found = self._cursor.execute(_GET, (self.namespace, key)).fetchone()
        except sqlite3.Error:
            return NOT_READY
        finally:
            lock.release()
        if found is None:
            return None
        value: bytes
        value, expires = found
        if expires is not None and expires <= self.clock():
            return None
        return value

    async def _get_value(self, key: str) -> bytes | None:
        params = (self.namespace, key)
        found = await self._run(lambda conn: conn.execute(_GET, params).fetchall())
        if not found:
            return None
        value: bytes
        value, expires = found[0]
        if expires is not None and expires <= self.clock():
            return None
        return value

    async def _get_entry(self, key: str) -> tuple[bytes, str | None] | None:
        params = (self.namespace, key)
        row = await self._run(lambda conn: conn.execute(_GET_ENTRY, params).fetchone())
        if row is None or (row[1] is not None and row[1] <= self.clock()):
            return None
        return row[0], row[2]

    async def _get_entries(self, keys: list[str]) -> dict[str, tuple[bytes, str | None]]:
        sql, params = _GET_MANY.format(",".join("?" * len(keys))), (self.namespace, *keys)
        rows = await self._run(lambda conn: conn.execute(sql, params).fetchall())
        now = self.clock()
        return {
            key: (value, meta)
            for key, value, expires, meta in rows
            if expires is None or expires > now
        }

    async def _list(self, prefix: str, start_after: str, limit: int) -> tuple[list[KeyInfo], bool]:
        upper = prefix_upper_bound(prefix) if prefix else None
        after = start_after >= prefix
        low = start_after if after else prefix
        sql = _LISTS[after, upper is not None]
        now = self.clock()
        params: tuple[object, ...] = (self.namespace, low, now, limit + 1)
        if upper is not None:
            params = (self.namespace, low, upper, now, limit + 1)
        rows = await self._run(lambda conn: conn.execute(sql, params).fetchall())
        keys = [
            KeyInfo(name, expires, None if meta is None else decode_metadata(meta, name))
            for name, expires, meta in rows
        ]
        if len(keys) > limit:
            return keys[:limit], True
        return keys, False

    async def _write(
        self, sql: str, params: object, *, many: bool = False, rows: int = 1, sweeps: bool = True
    ) -> int:
        """One write (grouped with other tasks' writes, `_sqlite_batch`); the rows it changed.

        While the WAL is far past its limit it returns after a pause, in every process
        that writes the file, so the checkpoint can take the lock (`_committed`)."""
        changed = await self._group.write(sql, params, many=many, rows=rows, sweeps=sweeps)
        if self._behind:
            await asyncio.sleep(BEHIND_PAUSE)
        return changed

    def _committed(self, rows: int, sweep_rows: int) -> None:
        """After a commit of `rows` rows: maybe checkpoint (off the loop), maybe purge."""
        self._behind = self._checkpointer.wrote(rows)
        if sweep_rows:
            self._writes += sweep_rows
            if self._writes >= PURGE_EVERY_WRITES:
                self._writes = 0
                self._purge()

    async def _put(self, record: Record) -> None:
        await self._write(_PUT, (self.namespace, *record[:_STORED]))

    async def _put_many(self, records: list[Record]) -> None:
        namespace = self.namespace
        rows = [(namespace, *record[:_STORED]) for record in records]
        await self._write(_PUT, rows, many=True, rows=len(rows))

    async def _delete(self, key: str) -> None:
        await self._write(_DELETE, (self.namespace, key), sweeps=False)

    async def _delete_many(self, keys: list[str]) -> None:
        namespace = self.namespace
        rows = [(namespace, key) for key in keys]
        await self._write(_DELETE, rows, many=True, rows=len(rows), sweeps=False)

    async def _put_if_absent(self, record: Record) -> bool:
        params = (self.namespace, *record[:_STORED], self.clock())
        return await self._write(_PUT_IF_ABSENT, params) == 1

    async def _delete_if_equals(self, key: str, value: bytes) -> bool:
        params = (self.namespace, key, value, self.clock())
        return await self._write(_DELETE_IF_EQUALS, params, sweeps=False) == 1

    async def _stored_bytes(self) -> int | None:
        """A scan of the whole namespace: on the store's worker thread, on a connection of its
        own, so a large namespace never holds up the loop (an in-memory file has no other
        connection to see it, and is small)."""
        params = (self.namespace, self.clock())
        if self.path == ":memory:":
            row = await self._run(lambda conn: conn.execute(_STORED_BYTES, params).fetchone())
            return int(row[0])

        def scan() -> int:
            conn = sqlite3.connect(self.path, timeout=self.busy_timeout, isolation_level=None)
            try:
                return int(conn.execute(_STORED_BYTES, params).fetchone()[0])
            finally:
                conn.close()

        try:
            done = self._checkpointer.submit(scan)
        except RuntimeError as exc:  # the worker thread ended with the store
            raise self._fail(exc) from exc
        try:
            return await asyncio.wrap_future(done)
        except sqlite3.Error as exc:
            raise self._fail(exc) from exc

    async def _close(self) -> None:
        """Close on the worker thread: the last connection to a file checkpoints it."""
        await self._group.drain()

        def close() -> None:
            with self._lock:
                self._conn.close()

        await asyncio.wrap_future(self._checkpointer.close(then=close))


async def from_url(
    url: str,
    *,
    namespace: str,
    limits: Limits | None,
    clock: Clock,
    busy_timeout: float | None = None,
) -> SQLiteStore:
    """sqlite:///relative/path.db or sqlite:////absolute/path.db[?busy_timeout=SECONDS]."""
    timeout = busy_timeout
    if timeout is None:
        raw = url_options(url).get("busy_timeout", "30")
        try:
            timeout = float(raw)
        except ValueError:
            timeout = math.nan
        if not 0 <= timeout < 1e6:
            raise KVConfigError(
                f"busy_timeout={raw!r} in {redact_url(url)!r} is not a number of seconds"
            )
    store = SQLiteStore(
        sqlite_path(url), namespace=namespace, limits=limits, clock=clock, busy_timeout=timeout
    )
    return await store.open()
