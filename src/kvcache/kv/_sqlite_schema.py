"""The SQLite store's file layout, and how an older file is brought up to it on open.

Version 2 is version 1 without the index on `expiration`: that index made every
replace write about three WAL pages instead of one. Expired rows are now found by
a sweep along the primary key (`sweep`), whose position lives in `kv_purge` so
that every process and every reopening continues where the last one stopped.

Each function here takes a connection and is run by the store, which retries it
while the file is locked; none of them waits on its own.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["COLUMNS", "SCHEMA_VERSION", "enable_wal", "prepare", "sweep", "transaction"]

SCHEMA_VERSION = 2
COLUMNS = ["namespace", "key", "value", "expiration", "metadata"]

_CREATE_KV = """
CREATE TABLE IF NOT EXISTS kv (
    namespace  TEXT NOT NULL,
    key        TEXT NOT NULL,
    value      BLOB NOT NULL,
    expiration INTEGER,
    metadata   TEXT,
    PRIMARY KEY (namespace, key)
) WITHOUT ROWID
"""
_CREATE_PURGE = """
CREATE TABLE IF NOT EXISTS kv_purge (
    id        INTEGER PRIMARY KEY CHECK (id = 1),
    namespace TEXT NOT NULL,
    key       TEXT NOT NULL
)
"""
_START_PURGE = "INSERT OR IGNORE INTO kv_purge (id, namespace, key) VALUES (1, '', '')"
# Version 1 (kvcache 0.1) had the same table plus this index.
_DROP_V1_INDEX = "DROP INDEX IF EXISTS kv_expiration"

_SWEEP_FROM = "SELECT namespace, key FROM kv_purge WHERE id = 1"
_SWEEP_END = (
    "SELECT namespace, key FROM kv WHERE (namespace, key) > (?, ?) "
    "ORDER BY namespace, key LIMIT 1 OFFSET ?"
)
_SWEEP_DELETE = (
    "DELETE FROM kv WHERE (namespace, key) > (?, ?) AND (namespace, key) <= (?, ?) "
    "AND expiration <= ?"
)
_SWEEP_DELETE_TAIL = "DELETE FROM kv WHERE (namespace, key) > (?, ?) AND expiration <= ?"
_SWEEP_MOVE = "UPDATE kv_purge SET namespace = ?, key = ? WHERE id = 1"


@contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """BEGIN IMMEDIATE ... COMMIT, rolled back on any error (the caller retries when busy).

    IMMEDIATE takes the write lock up front, so nothing inside meets a lock and no
    two readers upgrading to writers can deadlock.
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            try:
                conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass  # the original error is the one worth raising
        raise


def enable_wal(conn: sqlite3.Connection) -> None:
    """Put the file in WAL mode (readers then never wait for the writer).

    On a new file, several connections can race to switch; one that read the old
    mode fails as busy, and on its retry reads the mode again and finds WAL.
    """
    if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
        conn.execute("PRAGMA journal_mode = WAL").fetchone()
    # In WAL, NORMAL syncs at checkpoints only: a crash loses no committed row
    # the OS already has, and a power cut at most the last commits.
    conn.execute("PRAGMA synchronous = NORMAL")


def _user_version(conn: sqlite3.Connection) -> int:
    version: int = conn.execute("PRAGMA user_version").fetchone()[0]
    return version


def _check_columns(conn: sqlite3.Connection) -> None:
    columns = [row[1] for row in conn.execute("PRAGMA table_info(kv)")]
    if columns != COLUMNS:
        raise sqlite3.DatabaseError(f"table kv has columns {columns}, not kvcache's")


def prepare(conn: sqlite3.Connection) -> None:
    """Create the tables on a new file, or upgrade a version-1 file, in one transaction.

    A file already at this version needs no write lock. Openers racing on an old
    file all get here; the first upgrades it, the others find version 2 inside
    their own transaction and change nothing.
    """
    if _user_version(conn) == SCHEMA_VERSION:
        _check_columns(conn)
        return
    with transaction(conn):
        version = _user_version(conn)
        if version not in (0, 1, SCHEMA_VERSION):
            raise sqlite3.DatabaseError(
                f"schema version {version} is not {SCHEMA_VERSION}; is this a kvcache file?"
            )
        if version != SCHEMA_VERSION:
            conn.execute(_CREATE_KV)
            conn.execute(_DROP_V1_INDEX)
            conn.execute(_CREATE_PURGE)
            conn.execute(_START_PURGE)
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        _check_columns(conn)  # inside: a foreign `kv` table rolls everything back


def sweep(conn: sqlite3.Connection, now: float, rows: int) -> int:
    """Delete the expired rows among the next `rows` rows after the remembered position.

    Runs in the caller's transaction; bounded by `rows` whatever the table's size,
    and wraps to the start after the last row. Returns how many rows it deleted.
    """
    start = conn.execute(_SWEEP_FROM).fetchone() or ("", "")
    end = conn.execute(_SWEEP_END, (*start, rows - 1)).fetchone()
    if end is None:
        deleted = conn.execute(_SWEEP_DELETE_TAIL, (*start, now)).rowcount
        end = ("", "")
    else:
        deleted = conn.execute(_SWEEP_DELETE, (*start, *end, now)).rowcount
    conn.execute(_SWEEP_MOVE, tuple(end))
    return deleted
