"""The SQLite floor of one webhook delivery: its store statements, raw, no kvcache code.

What `kvcache serve` must write durably for one customers/update delivery of a
customer never cached, on the store's own table and with its own SQL and
pragmas, from one process with plain `sqlite3` calls: nothing of kvcache's
Python (HMAC, parsing, validation, the cache's bookkeeping, metrics) and not the
delivery log's row in the app database. The claims and the cache are two
namespaces of one file here, as the service keeps them.

    claim        put_if_absent of the IN_PROGRESS record         1 row
    index        list of the customer's e-mail index             a read
    invalidate   a mark and a tombstone for 2 keys, one IMMEDIATE  4 rows
    complete     get of the record, put of the COMPLETED record  1 row

Its CPU per delivery bounds from below what any implementation of the service's
contract on this store costs, beside the HTTP work the bare endpoint does too.
"""

from __future__ import annotations

import os
import random
import sqlite3
import tempfile
import time
import uuid
from pathlib import Path

from kvcache.cache._fence import DELETED, TOMBSTONE_METADATA
from kvcache.idempotency import DEFAULT_PREFIX
from kvcache.kv import _sqlite_schema as schema
from kvcache.kv import validation as v
from kvcache.kv.limits import Limits
from kvcache.kv.sqlite import _GET, _LISTS, _PUT, _PUT_IF_ABSENT, prefix_upper_bound
from kvcache.shopify import keys

__all__ = ["sqlite_floor"]

_SHOP = "bench.myshopify.com"
_EXPIRES = 2_000_000_000
_TOMBSTONE_METADATA = v.metadata_json(TOMBSTONE_METADATA, Limits())


def _delivery(conn: sqlite3.Connection, rng: random.Random, held: bytes, done: bytes) -> None:
    claim = f"{DEFAULT_PREFIX}{_SHOP}:{uuid.UUID(int=rng.getrandbits(128))}"
    customer = rng.randrange(10**12)
    now = time.time()
    conn.execute(_PUT_IF_ABSENT, ("WEBHOOKS", claim, held, _EXPIRES, None, now))
    index = keys.customer_emails_prefix(_SHOP, customer)
    upper = prefix_upper_bound(index)
    conn.execute(_LISTS[False, True], ("CACHE", index, upper, now, 1001)).fetchall()
    rows: list[tuple[str, str, bytes, int, str | None]] = []
    email = f"c{customer}@example.com"
    for key in (keys.customer_email_key(_SHOP, email), keys.customer_id_key(_SHOP, customer)):
        rows.append(("CACHE", DELETED + key, b"0123456789abcdef|1764000000.5", _EXPIRES, None))
        rows.append(("CACHE", key, b"~0123456789abcdef|", _EXPIRES, _TOMBSTONE_METADATA))
    with schema.transaction(conn):
        conn.executemany(_PUT, rows)
    conn.execute(_GET, ("WEBHOOKS", claim)).fetchall()
    conn.execute(_PUT, ("WEBHOOKS", claim, done, _EXPIRES, None))


def sqlite_floor(deliveries: int = 6000, seed: int = 1) -> float:
    """CPU µs per delivery (user + system of this process), checkpoints included."""
    rng = random.Random(seed)
    token = os.urandom(16).hex().encode()
    held = b'{"state":"IN_PROGRESS","token":"%s","expires":1900000000}' % token
    done = (
        b'{"state":"COMPLETED","token":"t","at":1764000000.5,"result":{"result":'
        b'{"invalidated":2},"event":"e","sha256":"' + os.urandom(32).hex().encode() + b'"}}'
    )
    with tempfile.TemporaryDirectory(prefix="kvcache-floor-") as tmp:
        conn = sqlite3.connect(Path(tmp) / "kv.sqlite", isolation_level=None, timeout=0)
        try:
            conn.execute("PRAGMA wal_autocheckpoint = 0")
            schema.enable_wal(conn)
            schema.prepare(conn)
            for _ in range(500):  # warm the statement cache and the first pages
                _delivery(conn, rng, held, done)
            started = time.process_time()
            for n in range(1, deliveries + 1):
                _delivery(conn, rng, held, done)
                if n % 650 == 0:  # about the store's WAL_FRAMES
                    conn.execute("PRAGMA wal_checkpoint(RESTART)")
            return (time.process_time() - started) / deliveries * 1e6
        finally:
            conn.close()
