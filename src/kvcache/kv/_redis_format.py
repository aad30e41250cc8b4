"""How a namespace lies in Redis: key names, the packed record, listing bounds.

Every key of a namespace carries the namespace as its hash tag, so one Lua script
can touch all of them, on a single server or on Redis Cluster:

    kv:{NS}:v:<key>   the record: a 13-byte header, the metadata JSON, the value
    kv:{NS}:idx       sorted set, score 0, members = key names (ZRANGEBYLEX = byte order)
    kv:{NS}:exp       sorted set, score = expiration, members = keys that expire

The header (`>BqI`: format version, expiration or 0, metadata length) lets `get`
be one GET decoded by one `struct` call, and lets a listing read expiration and
metadata with GETRANGE, never the value.
"""

from __future__ import annotations

import struct

from .types import Record

__all__ = [
    "HEADER",
    "KeySpace",
    "lex_range",
    "pack",
    "unpack",
    "unpack_header",
    "unpack_many",
    "values_many",
]

HEADER = struct.Struct(">BqI")
VERSION = 1
NO_METADATA = b""
_SIZE = HEADER.size
_unpack_from = HEADER.unpack_from


class KeySpace:
    """The Redis key names of one namespace."""

    __slots__ = ("expiry", "index", "scripts", "value_prefix")

    def __init__(self, namespace: str) -> None:
        # Only "}" can end a hash tag early; "%" is escaped so the mapping stays one-to-one.
        tag = namespace.replace("%", "%25").replace("}", "%7D")
        prefix = f"kv:{{{tag}}}:".encode("utf-8", "surrogatepass")
        self.value_prefix = prefix + b"v:"
        self.index = prefix + b"idx"
        self.expiry = prefix + b"exp"
        #: The KEYS of every script: the index, then the expiry set.
        self.scripts = (self.index, self.expiry)

    def value(self, key: str) -> bytes:
        return self.value_prefix + key.encode()


def pack(record: Record) -> bytes:
    """Header, metadata and value as one string."""
    meta = (
        NO_METADATA if record.metadata is None else record.metadata.encode("utf-8", "surrogatepass")
    )
    return HEADER.pack(VERSION, record.expiration or 0, len(meta)) + meta + record.value


def _fields(raw: bytes) -> tuple[int, int]:
    """Expiration (0 = none) and metadata length; ValueError if kvcache did not write it."""
    try:
        version, expires, size = _unpack_from(raw)
    except struct.error:
        raise ValueError("not a kvcache record (too short)") from None
    if version != VERSION:
        raise ValueError(f"not a kvcache record (format {version})")
    return expires, size


def unpack(raw: bytes, now: float) -> tuple[bytes, str | None] | None:
    """Value and metadata JSON of a packed record; None once it expired by `now`."""
    expires, size = _fields(raw)
    if expires and expires <= now:
        return None
    if size:
        end = _SIZE + size
        return raw[end:], raw[_SIZE:end].decode("utf-8", "surrogatepass")
    return raw[_SIZE:], None


def _alien(key: str) -> ValueError:
    return ValueError(f"key {key!r}: not a kvcache record")


def unpack_many(
    keys: list[str], raws: list[bytes | None], now: float
) -> dict[str, tuple[bytes, str | None]]:
    """`unpack` over an MGET reply, inlined: values and metadata JSON of the live records.

    Raises ValueError naming the first key whose string kvcache did not write.
    """
    found: dict[str, tuple[bytes, str | None]] = {}
    for key, raw in zip(keys, raws, strict=True):
        if raw is None:
            continue
        try:
            version, expires, size = _unpack_from(raw)
        except struct.error:
            version = -1
        if version != VERSION:
            raise _alien(key)
        if expires and expires <= now:
            continue
        if size:
            end = _SIZE + size
            found[key] = (raw[end:], raw[_SIZE:end].decode("utf-8", "surrogatepass"))
        else:
            found[key] = (raw[_SIZE:], None)
    return found


def values_many(keys: list[str], raws: list[bytes | None], now: float) -> dict[str, bytes]:
    """The live values of an MGET reply, for `get_many`: no metadata, no tuples.

    Raises ValueError naming the first key whose string kvcache did not write.
    """
    found: dict[str, bytes] = {}
    for key, raw in zip(keys, raws, strict=True):
        if raw is None:
            continue
        try:
            version, expires, size = _unpack_from(raw)
        except struct.error:
            version = -1
        if version != VERSION:
            raise _alien(key)
        if not expires or expires > now:
            found[key] = raw[_SIZE + size :]
    return found


def unpack_header(raw: bytes) -> tuple[int | None, str | None]:
    """Expiration and metadata JSON from a record's header (as listings read it)."""
    expires, size = _fields(raw)
    meta = raw[_SIZE : _SIZE + size].decode("utf-8", "surrogatepass") if size else None
    return (expires or None), meta


def lex_range(prefix: str, start_after: str) -> tuple[bytes, bytes]:
    """ZRANGEBYLEX min and max for keys > start_after that start with prefix."""
    low = prefix.encode()
    after = start_after.encode()
    if after and after >= low:
        lower = b"(" + after
    elif low:
        lower = b"[" + low
    else:
        lower = b"-"
    if not low:
        return lower, b"+"
    # UTF-8 never holds 0xFF, so bumping the last byte bounds every extension of the prefix.
    return lower, b"(" + low[:-1] + bytes([low[-1] + 1])
