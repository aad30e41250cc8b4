"""The embedded default: one SQLite file, many namespaces, many processes.

sqlite3 is called directly on the event loop's thread: a point read costs a few
microseconds, less than a hop to a worker thread would. WAL lets readers run
beside one writer; the busy timeout makes writers queue instead of failing with
"database is locked"; every write is one statement or one short IMMEDIATE
transaction, so nothing is ever half-written.
"""

from __future__ import annotations

import math
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import ClassVar

from ._url import DEFAULT_PATH, sqlite_path, url_options
from .base import Clock, KVStore
from .errors import KVBackendError, KVConfigError
from .limits import Limits
from .types import KeyInfo, Record
from .validation import decode_metadata

__all__ = ["SQLiteStore", "DEFAULT_PATH"]

SCHEMA_VERSION = 1
PURGE_BATCH = 256
PURGE_EVERY_WRITES = 512
WAL_SWITCH_WAIT_MS = 50

_SCHEMA = """
CREATE TABLE IF NOT EXISTS kv (
    namespace  TEXT NOT NULL,
    key        TEXT NOT NULL,
    value      BLOB NOT NULL,
    expiration INTEGER,
    metadata   TEXT,
    PRIMARY KEY (namespace, key)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS kv_expiration ON kv (expiration) WHERE expiration IS NOT NULL;
"""
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
_DELETE_IF_EQUALS = (
    "DELETE FROM kv WHERE namespace = ? AND key = ? AND value = ? "
    "AND (expiration IS NULL OR expiration > ?)"
)
_LIST = (
    "SELECT key, expiration, metadata FROM kv WHERE namespace = ? AND key > ? AND key >= ? "
    "AND (expiration IS NULL OR expiration > ?) ORDER BY key LIMIT ?"
)
_LIST_BOUNDED = (
    "SELECT key, expiration, metadata FROM kv WHERE namespace = ? AND key > ? AND key >= ? "
    "AND key < ? AND (expiration IS NULL OR expiration > ?) ORDER BY key LIMIT ?"
)
_PURGE = (
    "DELETE FROM kv WHERE (namespace, key) IN "
    "(SELECT namespace, key FROM kv WHERE expiration <= ? LIMIT ?)"
)


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


def _enable_wal(conn: sqlite3.Connection, busy_timeout: float) -> None:
    """Put the file in WAL mode, even when several connections race to do it.

    On a new file, a connection that read the old mode can wait on the switch
    until every connection that already switched has closed; so wait briefly,
    look again, and repeat until the file is in WAL or the busy timeout is spent.
    """
    deadline = time.monotonic() + busy_timeout
    conn.execute(f"PRAGMA busy_timeout = {WAL_SWITCH_WAIT_MS}")
    while True:
        try:
            if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                conn.execute("PRAGMA journal_mode = WAL").fetchone()
            return
        except sqlite3.OperationalError:
            if time.monotonic() >= deadline:
                raise


class SQLiteStore(KVStore):
    """A namespace inside a SQLite file shared by any number of processes and threads."""

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
    ) -> None:
        super().__init__(namespace=namespace, limits=limits, clock=clock)
        self.path = path
        self._lock = threading.RLock()
        self._writes = 0
        self._conn = self._connect(path, busy_timeout)

    def _connect(self, path: str, busy_timeout: float) -> sqlite3.Connection:
        try:
            if path != ":memory:":
                parent = os.path.dirname(os.path.abspath(path))
                os.makedirs(parent, exist_ok=True)
            conn = sqlite3.connect(
                path,
                timeout=busy_timeout,
                isolation_level=None,
                check_same_thread=False,
                cached_statements=256,
            )
        except (OSError, sqlite3.Error) as exc:
            raise KVBackendError(
                f"cannot open {path!r}: {exc}", backend=self.backend, cause=exc
            ) from exc
        try:
            _enable_wal(conn, busy_timeout)
            conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
            conn.execute("PRAGMA synchronous = NORMAL")
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version not in (0, SCHEMA_VERSION):
                raise sqlite3.DatabaseError(
                    f"schema version {version} is not {SCHEMA_VERSION}; is this a kvcache file?"
                )
            conn.execute("BEGIN IMMEDIATE")
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            conn.execute("COMMIT")
            columns = [row[1] for row in conn.execute("PRAGMA table_info(kv)")]
            if columns != ["namespace", "key", "value", "expiration", "metadata"]:
                raise sqlite3.DatabaseError(f"table kv has columns {columns}, not kvcache's")
        except sqlite3.Error as exc:
            conn.close()
            raise KVBackendError(
                f"cannot use {path!r}: {exc}", backend=self.backend, cause=exc
            ) from exc
        return conn

    def _fail(self, exc: sqlite3.Error) -> KVBackendError:
        return KVBackendError(f"{exc} ({self.path})", backend=self.backend, cause=exc)

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE takes the write lock up front, so no deadlock can surface."""
        with self._lock:
            conn = self._conn
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise self._fail(exc) from exc
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException as exc:
                try:
                    conn.execute("ROLLBACK")
                except sqlite3.Error:
                    pass
                if isinstance(exc, sqlite3.Error):
                    raise self._fail(exc) from exc
                raise

    def _wrote(self, count: int = 1) -> None:
        self._writes += count
        if self._writes >= PURGE_EVERY_WRITES:
            self._writes = 0
            self._purge()

    def _purge(self) -> None:
        """Delete one bounded batch of expired rows (any namespace)."""
        try:
            with self._lock:
                self._conn.execute(_PURGE, (self.clock(), PURGE_BATCH))
        except sqlite3.Error:
            pass  # purging is housekeeping; the next write tries again

    async def _get_value(self, key: str) -> bytes | None:
        try:
            with self._lock:
                row = self._conn.execute(_GET, (self.namespace, key)).fetchone()
        except sqlite3.Error as exc:
            raise self._fail(exc) from exc
        if row is None or (row[1] is not None and row[1] <= self.clock()):
            return None
        value: bytes = row[0]
        return value

    async def _get_entry(self, key: str) -> tuple[bytes, str | None] | None:
        try:
            with self._lock:
                row = self._conn.execute(_GET_ENTRY, (self.namespace, key)).fetchone()
        except sqlite3.Error as exc:
            raise self._fail(exc) from exc
        if row is None or (row[1] is not None and row[1] <= self.clock()):
            return None
        return row[0], row[2]

    async def _get_entries(self, keys: list[str]) -> dict[str, tuple[bytes, str | None]]:
        try:
            with self._lock:
                rows = self._conn.execute(
                    _GET_MANY.format(",".join("?" * len(keys))), (self.namespace, *keys)
                ).fetchall()
        except sqlite3.Error as exc:
            raise self._fail(exc) from exc
        now = self.clock()
        return {
            key: (value, meta)
            for key, value, expires, meta in rows
            if expires is None or expires > now
        }

    async def _list(self, prefix: str, start_after: str, limit: int) -> tuple[list[KeyInfo], bool]:
        upper = prefix_upper_bound(prefix) if prefix else None
        now = self.clock()
        try:
            with self._lock:
                if upper is None:
                    rows = self._conn.execute(
                        _LIST, (self.namespace, start_after, prefix, now, limit + 1)
                    ).fetchall()
                else:
                    rows = self._conn.execute(
                        _LIST_BOUNDED,
                        (self.namespace, start_after, prefix, upper, now, limit + 1),
                    ).fetchall()
        except sqlite3.Error as exc:
            raise self._fail(exc) from exc
        keys = [
            KeyInfo(name, expires, None if meta is None else decode_metadata(meta))
            for name, expires, meta in rows
        ]
        if len(keys) > limit:
            return keys[:limit], True
        return keys, False

    def _execute(self, sql: str, params: tuple[object, ...]) -> sqlite3.Cursor:
        try:
            with self._lock:
                return self._conn.execute(sql, params)
        except sqlite3.Error as exc:
            raise self._fail(exc) from exc

    async def _put(self, record: Record) -> None:
        self._execute(_PUT, (self.namespace, *record[:_STORED]))
        self._wrote()

    async def _put_many(self, records: list[Record]) -> None:
        namespace = self.namespace
        with self._transaction() as conn:
            conn.executemany(_PUT, [(namespace, *record[:_STORED]) for record in records])
        self._wrote(len(records))

    async def _delete(self, key: str) -> None:
        self._execute(_DELETE, (self.namespace, key))

    async def _delete_many(self, keys: list[str]) -> None:
        namespace = self.namespace
        with self._transaction() as conn:
            conn.executemany(_DELETE, [(namespace, key) for key in keys])

    async def _put_if_absent(self, record: Record) -> bool:
        cursor = self._execute(_PUT_IF_ABSENT, (self.namespace, *record[:_STORED], self.clock()))
        self._wrote()
        return cursor.rowcount == 1

    async def _delete_if_equals(self, key: str, value: bytes) -> bool:
        cursor = self._execute(_DELETE_IF_EQUALS, (self.namespace, key, value, self.clock()))
        return cursor.rowcount == 1

    async def _close(self) -> None:
        with self._lock:
            self._conn.close()


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
            raise KVConfigError(f"busy_timeout={raw!r} in {url!r} is not a number of seconds")
    return SQLiteStore(
        sqlite_path(url), namespace=namespace, limits=limits, clock=clock, busy_timeout=timeout
    )
