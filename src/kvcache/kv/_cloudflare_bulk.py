"""Bulk-write bodies for Cloudflare's REST API: entries as JSON text, split at 100 MB.

An entry is written as text straight from the validated Record: the key and a
UTF-8 value as JSON strings (other bytes as base64 with `"base64": true`), the TTL
as given or the absolute expiration, and the metadata JSON exactly as it was
sized, so nothing is parsed and written again.
"""

from __future__ import annotations

import base64

from ._json import dumps
from .errors import KVBackendError
from .types import Record

__all__ = ["BULK_BODY_MAX", "bulk_entry", "split_bodies", "unsuccessful"]

#: The largest bulk-write body Cloudflare takes in one request.
BULK_BODY_MAX = 100_000_000
_NAMED_KEYS = 12


def bulk_entry(record: Record) -> str:
    """One entry of a bulk write as JSON text; bytes that are not UTF-8 travel as base64."""
    try:
        parts = ['{"key":', dumps(record.key), ',"value":', dumps(record.value.decode("utf-8"))]
    except UnicodeDecodeError:
        text = base64.b64encode(record.value).decode("ascii")
        parts = ['{"key":', dumps(record.key), ',"value":"', text, '","base64":true']
    if record.ttl is not None:
        parts.append(f',"expiration_ttl":{record.ttl}')
    elif record.expiration is not None:
        parts.append(f',"expiration":{record.expiration}')
    if record.metadata is not None:
        parts += [',"metadata":', record.metadata]
    parts.append("}")
    return "".join(parts)


def split_bodies(entries: list[str], limit: int = BULK_BODY_MAX) -> list[str]:
    """JSON arrays of the entries, each at most `limit` bytes (one entry may stand alone)."""
    bodies: list[str] = []
    batch: list[str] = []
    size = 2
    for entry in entries:
        length = len(entry.encode("utf-8")) + 1
        if batch and size + length > limit:
            bodies.append("[" + ",".join(batch) + "]")
            batch, size = [], 2
        batch.append(entry)
        size += length
    if batch:
        bodies.append("[" + ",".join(batch) + "]")
    return bodies


def unsuccessful(what: str, done: str, keys: list[str]) -> KVBackendError:
    named = ", ".join(repr(key) for key in keys[:_NAMED_KEYS])
    more = len(keys) - _NAMED_KEYS
    suffix = f" and {more} more" if more > 0 else ""
    return KVBackendError(
        f"{what} failed: {len(keys)} keys were not {done} even on a second try: {named}{suffix}",
        backend="cloudflare",
    )
