"""Argument checks with Workers KV's conditions, order and wording.

Every function here raises before any I/O, so a refused call writes nothing.
The key rules live in `_keys` and the numeric options in `_numbers` (both
re-exported here); values, metadata, cursors and bulk arguments are checked here.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable, Mapping, Sized
from itertools import islice
from typing import Any

from ._json import dumps_readable, loads
from ._keys import SERVER, check_key, check_prefix
from ._numbers import (
    INT32_MAX,
    LIST_LIMIT_MAX,
    check_cache_ttl,
    expiry,
    expiry_and_ttl,
    list_limit,
    to_int32,
)
from .errors import KVValidationError, shown
from .limits import Limits
from .types import Record

__all__ = [
    "BULK_GET_MAX",
    "BULK_WRITE_MAX",
    "INT32_MAX",
    "LIST_LIMIT_MAX",
    "bulk_delete_keys",
    "bulk_records",
    "check_bulk_get",
    "check_cache_ttl",
    "check_key",
    "check_prefix",
    "check_server_key",
    "check_type",
    "decode_cursor",
    "decode_metadata",
    "decode_value",
    "encode_cursor",
    "entry_record",
    "expiry",
    "expiry_and_ttl",
    "json_kind",
    "list_limit",
    "metadata_json",
    "shown",
    "to_int32",
    "value_bytes",
]

BULK_GET_MAX = 100
BULK_WRITE_MAX = 10_000
BULK_GET_MAX_BYTES = 25 * 1024 * 1024
_VALUE_TYPES = ("text", "json", "bytes", "arrayBuffer")
_MAX_ERRORS_NAMED = 12
_BYTES_LIKE = (str, bytes, bytearray, memoryview)


def check_server_key(key: object, op: str, limits: Limits) -> str:
    """The server's key rules, which bulk operations reach (no client-side check there)."""
    return check_key(key, op, limits, SERVER)


def check_type(type: object, *, bulk: bool = False) -> None:
    """Value types; bulk reads take "text" and "json" as Workers KV does, and kvcache's
    "bytes" (raw values; over Cloudflare's REST API that means single reads)."""
    if not isinstance(type, str):
        raise TypeError(f'type must be "text", "json" or "bytes", not {type.__class__.__name__}')
    if bulk:
        if type not in ("text", "json", "bytes"):
            raise KVValidationError(
                f'"{type}" is not a valid type. Use "json" or "text"', status=400, op="GET_BULK"
            )
    elif type not in _VALUE_TYPES:
        raise KVValidationError(
            'Unknown response type. Possible types are "text", "json", and "bytes".'
        )


def value_bytes(value: object, limits: Limits, op: str = "PUT") -> bytes:
    """The stored bytes of a value: a str as its UTF-8, bytes-like objects as they are.

    A str with a lone surrogate has no UTF-8 form. Workers KV (through TextEncoder)
    would store U+FFFD in its place, so the value could never be read back as it
    was given; kvcache refuses it instead.
    """
    if isinstance(value, str):
        try:
            data = value.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise KVValidationError(
                f"Value is not valid Unicode: a lone surrogate U+{ord(value[exc.start]):04X} "
                f"at index {exc.start} has no UTF-8 form. Pass bytes to store other data.",
                status=400,
                op=op,
            ) from None
    elif isinstance(value, bytes):
        data = value
    elif isinstance(value, bytearray | memoryview):
        try:
            data = bytes(value)
        except ValueError as exc:  # a released memoryview
            raise TypeError(f"value cannot be read: {exc}") from None
    else:
        raise TypeError(
            "KV put() accepts only str, bytes, bytearray and memoryview values, "
            f"not {type(value).__name__}"
        )
    if len(data) > limits.max_value_bytes:
        raise KVValidationError(
            f"Value length of {len(data)} exceeds limit of {limits.max_value_bytes}.",
            status=413,
            op=op,
        )
    return data


def metadata_json(metadata: object, limits: Limits, op: str = "PUT") -> str | None:
    """Compact JSON as JSON.stringify writes it; None means no metadata."""
    if metadata is None:
        return None
    text = dumps_readable(metadata, "metadata")
    size = len(text) if text.isascii() else len(text.encode("utf-8"))
    if size > limits.max_metadata_bytes:
        raise KVValidationError(
            f"Metadata length of {size} exceeds limit of {limits.max_metadata_bytes}.",
            status=413,
            op=op,
        )
    return text


def decode_value(raw: bytes, type: str) -> Any:
    if type == "text":
        return raw.decode("utf-8", "replace")
    if type == "json":
        try:
            return loads(raw)
        except ValueError as exc:
            raise KVValidationError(f"Value is not valid JSON: {exc}", status=400) from None
    return raw


def decode_metadata(text: str | None, key: str | None = None) -> Any:
    """Stored metadata JSON, parsed; KVValidationError naming the key if it is not JSON.

    kvcache never stores metadata it cannot parse (see `_json.dumps_readable`),
    so this fails only on rows another program wrote.
    """
    if text is None:
        return None
    try:
        return loads(text)
    except ValueError as exc:
        whose = "" if key is None else f" of key {key!r}"
        raise KVValidationError(f"Metadata{whose} is not valid JSON: {exc}", status=400) from None


def encode_cursor(last_key: str) -> str:
    """Miniflare's cursor: base64 of the last returned key's UTF-8 bytes."""
    return base64.b64encode(last_key.encode("utf-8")).decode("ascii")


def decode_cursor(cursor: object) -> str:
    """The key to start strictly after; "" for the first page."""
    if cursor is None or cursor == "":
        return ""
    if not isinstance(cursor, str):
        raise TypeError(f"cursor must be str, not {type(cursor).__name__}")
    try:
        return base64.b64decode(cursor.encode("ascii"), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeError, ValueError):
        raise KVValidationError(f"Invalid cursor {cursor!r}.", status=400, op="GET") from None


def _items(items: object, call: str, what: str, most: int) -> tuple[list[Any], int, bool]:
    """A bulk argument's items, how many were read, and whether that is all of them.

    Any iterable serves: lists as they are, other collections copied, iterators
    (generators) read only up to one past the limit, so an endless one cannot hang
    the call. A str, bytes or mapping is refused: it iterates, but it is one item.
    """
    if isinstance(items, list):
        return items, len(items), True
    if isinstance(items, _BYTES_LIKE) or (isinstance(items, Mapping) and call == "put_many"):
        raise TypeError(
            f"{call}() takes an iterable of {what}, not a single {type(items).__name__}"
        )
    if not isinstance(items, Iterable):
        raise TypeError(f"{call}() takes an iterable of {what}, not {type(items).__name__}")
    if isinstance(items, Sized):
        whole = list(items)
        return whole, len(whole), True
    taken = list(islice(items, most + 1))
    return taken, len(taken), len(taken) <= most


def check_bulk_get(keys: object, type: object, limits: Limits) -> list[str]:
    """Bulk-get rules; returns the distinct keys in request order."""
    items, count, _ = _items(keys, "get_many", "keys", BULK_GET_MAX)
    check_type(type, bulk=True)
    if count > BULK_GET_MAX:
        raise KVValidationError(
            f"You can request a maximum of {BULK_GET_MAX} keys", status=400, op="GET_BULK"
        )
    if not count:
        raise KVValidationError("You must request a minimum of 1 key", status=400, op="GET_BULK")
    try:
        unique: list[str] = list(dict.fromkeys(items))
    except TypeError:  # an unhashable item, which is no str either
        unique = items
    if not _plain_ascii_keys(unique, limits.max_key_bytes):
        for key in unique:
            check_server_key(key, "GET_BULK", limits)
    return unique


def _plain_ascii_keys(keys: list[str], most: int) -> bool:
    """True when every key is ASCII, 3..most chars long: valid without encoding each one.

    Nearly all bulk reads are like this; the checks run in C over the whole batch.
    """
    try:
        joined = "".join(keys)
    except TypeError:
        return False
    lengths = list(map(len, keys))
    return joined.isascii() and min(lengths) > 2 and max(lengths) <= most


def check_bulk_size(total: int) -> None:
    if total > BULK_GET_MAX_BYTES:
        raise KVValidationError(
            "Total size of request exceeds the limit of 25MB", status=413, op="GET_BULK"
        )


def json_kind(value: object) -> str:
    """The JSON name of a value's type ("object", "array", ...); else the Python type's name."""
    if isinstance(value, bool):
        return "boolean"
    if value is None:
        return "null"
    for kind, name in ((str, "string"), (int | float, "number"), (Mapping, "object")):
        if isinstance(value, kind):
            return name
    return "array" if isinstance(value, list | tuple) else type(value).__name__


def _entry_shape(entry: Mapping[Any, Any]) -> None:
    """wrangler's type checks of a bulk entry, which come before the store's; bytes values
    are allowed too, for Python callers (a JSON file cannot hold them)."""
    if not isinstance(entry.get("key"), str):
        raise TypeError('needs a "key" string')
    if not isinstance(entry.get("value"), str | bytes | bytearray | memoryview):
        raise TypeError('needs a "value" string')
    for field in ("expiration", "expiration_ttl"):
        number = entry.get(field)
        if number is not None and json_kind(number) != "number":
            raise TypeError(f'"{field}" must be a number, not {json_kind(number)}')
    flag = entry.get("base64")
    if flag is not None and not isinstance(flag, bool):
        raise TypeError(f'"base64" must be true or false, not {json_kind(flag)}')


def entry_record(entry: object, now: float, limits: Limits) -> Record:
    """One wrangler bulk entry, checked as `put` checks its arguments.

    The one rule for `put_many` and `kvcache kv bulk put`: wrangler's types first
    (metadata may be any JSON value, as in `put`), then Workers KV's limits.
    """
    if not isinstance(entry, Mapping):
        raise TypeError(f"must be an object, not {json_kind(entry)}")
    _entry_shape(entry)
    key: str = entry["key"]
    check_server_key(key, "PUT", limits)
    value = entry["value"]
    encoded = entry.get("base64", False)
    if not isinstance(encoded, bool):
        raise TypeError(f'"base64" must be true or false, not {type(encoded).__name__}')
    if encoded:
        if not isinstance(value, str):
            raise TypeError('"value" must be a base64 string when "base64" is true')
        try:
            value = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise KVValidationError("Value is not valid base64.", status=400, op="PUT") from None
    expires, ttl = expiry_and_ttl(entry.get("expiration"), entry.get("expiration_ttl"), now, limits)
    meta = metadata_json(entry.get("metadata"), limits)
    return Record(key, value_bytes(value, limits), expires, meta, ttl)


def _too_many(count: int, exact: bool, most: int, what: str, op: str) -> KVValidationError:
    got = f"got {count}" if exact else f"got more than {most}"
    done = "written" if op == "PUT" else "deleted"
    return KVValidationError(
        f"A maximum of {most} {what} can be {done} at once; {got}.", status=413, op=op
    )


def bulk_records(entries: object, now: float, limits: Limits) -> list[Record]:
    """Validate every entry first; raise naming the first bad ones, so nothing is written."""
    items, count, exact = _items(entries, "put_many", "entries", BULK_WRITE_MAX)
    if count > BULK_WRITE_MAX:
        raise _too_many(count, exact, BULK_WRITE_MAX, "key-value pairs", "PUT")
    records: list[Record] = []
    problems: list[tuple[int, Exception]] = []
    for index, entry in enumerate(items):
        try:
            records.append(entry_record(entry, now, limits))
        except (KVValidationError, TypeError) as exc:
            problems.append((index, exc))
    if problems:
        _raise_bulk(problems, count, "PUT")
    return records


def bulk_delete_keys(keys: object, limits: Limits) -> list[str]:
    items, count, exact = _items(keys, "delete_many", "keys", BULK_WRITE_MAX)
    if count > BULK_WRITE_MAX:
        raise _too_many(count, exact, BULK_WRITE_MAX, "keys", "DELETE")
    problems: list[tuple[int, Exception]] = []
    for index, key in enumerate(items):
        try:
            check_server_key(key, "DELETE", limits)
        except (KVValidationError, TypeError) as exc:
            problems.append((index, exc))
    if problems:
        _raise_bulk(problems, count, "DELETE")
    return items


def _raise_bulk(problems: list[tuple[int, Exception]], total: int, op: str) -> None:
    first_index, first = problems[0]
    named = "; ".join(f"entry {i}: {exc}" for i, exc in problems[:_MAX_ERRORS_NAMED])
    more = len(problems) - _MAX_ERRORS_NAMED
    suffix = f"; and {more} more" if more > 0 else ""
    text = f"{len(problems)} of {total} entries are invalid, nothing was written: {named}{suffix}"
    if isinstance(first, KVValidationError):
        raise KVValidationError(text, status=first.status) from first
    raise TypeError(text) from first
