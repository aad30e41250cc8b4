"""Argument checks with Workers KV's conditions, order and wording.

Every function here raises before any I/O, so a refused call writes nothing.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

from ._json import dumps, loads
from .errors import KVValidationError
from .limits import Limits
from .types import Record

__all__ = [
    "BULK_GET_MAX",
    "BULK_WRITE_MAX",
    "LIST_LIMIT_MAX",
    "ValueType",
    "bulk_delete_keys",
    "bulk_records",
    "check_bulk_get",
    "check_cache_ttl",
    "check_key",
    "check_prefix",
    "check_server_key",
    "decode_cursor",
    "decode_metadata",
    "decode_value",
    "encode_cursor",
    "entry_record",
    "expiry",
    "json_kind",
    "list_limit",
    "metadata_json",
    "to_int32",
    "value_bytes",
]

ValueType = Literal["text", "json", "bytes"]

LIST_LIMIT_MAX = 1000
BULK_GET_MAX = 100
BULK_WRITE_MAX = 10_000
BULK_GET_MAX_BYTES = 25 * 1024 * 1024
INT32_MIN = -2_147_483_648
INT32_MAX = 2_147_483_647
_VALUE_TYPES = ("text", "json", "bytes", "arrayBuffer")
_MAX_ERRORS_NAMED = 12
_SURROGATE = re.compile("[\ud800-\udfff]")


def _key_bytes(key: object, op: str) -> int:
    if not isinstance(key, str):
        raise TypeError(f"KV {op.lower()}() key must be str, not {type(key).__name__}")
    try:
        return len(key.encode("utf-8"))
    except UnicodeEncodeError:
        raise KVValidationError("Key name is not valid Unicode.", status=400, op=op) from None


def check_key(key: str, op: str, limits: Limits) -> None:
    """The binding's client-side key rules (get, get_with_metadata, put, delete)."""
    size = _key_bytes(key, op)
    if size == 0:
        raise KVValidationError("Key name cannot be empty.")
    if key == "." or key == "..":
        raise KVValidationError(f'"{key}" is not allowed as a key name.')
    if size > limits.max_key_bytes:
        raise KVValidationError(
            f"UTF-8 encoded length of {size} exceeds key length limit of {limits.max_key_bytes}.",
            status=414,
            op=op,
        )


def check_server_key(key: str, op: str, limits: Limits) -> None:
    """The server's key rules, which bulk operations reach (no client-side check there)."""
    size = _key_bytes(key, op)
    if size == 0:
        raise KVValidationError("Key names must not be empty", status=400, op=op)
    if key == "." or key == "..":
        raise KVValidationError(
            f'Illegal key name "{key}". Please use a different name.', status=400, op=op
        )
    if size > limits.max_key_bytes:
        raise KVValidationError(
            f"UTF-8 encoded length of {size} exceeds key length limit of {limits.max_key_bytes}.",
            status=414,
            op=op,
        )


def check_prefix(prefix: str | None, limits: Limits) -> str:
    """A list prefix: any string up to the key size limit; None means all keys."""
    if prefix is None:
        return ""
    size = _key_bytes(prefix, "GET")
    if size > limits.max_key_bytes:
        raise KVValidationError(
            f"UTF-8 encoded length of {size} exceeds key length limit of {limits.max_key_bytes}.",
            status=414,
            op="GET",
        )
    return prefix


def to_int32(value: object, name: str) -> int:
    """Coerce a numeric option as the binding does: truncate, NaN -> 0, int32 range."""
    if isinstance(value, bool):
        raise TypeError(f"{name} must be an int, not bool")
    if isinstance(value, int):
        number: float = value  # any int is finite, even one too large for a float
    elif isinstance(value, float):
        number = value if math.isfinite(value) else 0
    elif isinstance(value, str):
        try:
            number = float(value.strip() or "nan")
        except ValueError:
            number = math.nan
        number = number if math.isfinite(number) else 0
    else:
        raise TypeError(f"{name} must be an int, float or numeric str, not {type(value).__name__}")
    result = int(number)
    if not INT32_MIN <= result <= INT32_MAX:
        raise KVValidationError(
            f"Value out of range. Must be between {INT32_MIN} and {INT32_MAX} (inclusive)."
        )
    return result


def check_type(type: str, *, bulk: bool = False) -> None:
    """Value types; bulk reads take "text" and "json" as Workers KV does, and kvcache's
    "bytes" (raw values; over Cloudflare's REST API that means single reads)."""
    if bulk:
        if type not in ("text", "json", "bytes"):
            raise KVValidationError(
                f'"{type}" is not a valid type. Use "json" or "text"', status=400, op="GET_BULK"
            )
    elif type not in _VALUE_TYPES:
        raise KVValidationError(
            'Unknown response type. Possible types are "text", "json", and "bytes".'
        )


def check_cache_ttl(cache_ttl: object, op: str, limits: Limits) -> None:
    if cache_ttl is None:
        return
    ttl = to_int32(cache_ttl, "cache_ttl")
    if ttl < limits.min_cache_ttl:
        raise KVValidationError(
            f"Invalid cache_ttl of {ttl}. Cache TTL must be at least {limits.min_cache_ttl}.",
            status=400,
            op=op,
        )


def value_bytes(value: object, limits: Limits, op: str = "PUT") -> bytes:
    """The stored bytes of a put value; str is stored as UTF-8."""
    if isinstance(value, str):
        data = value.encode("utf-8", "surrogatepass")
    elif isinstance(value, bytes):
        data = value
    elif isinstance(value, bytearray | memoryview):
        data = bytes(value)
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
    text = dumps(metadata, "metadata")
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError:
        # A lone surrogate has no UTF-8 form; JSON.stringify writes it as a \u escape.
        text = _SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)
        size = len(text.encode("utf-8"))
    if size > limits.max_metadata_bytes:
        raise KVValidationError(
            f"Metadata length of {size} exceeds limit of {limits.max_metadata_bytes}.",
            status=413,
            op=op,
        )
    return text


def expiry(
    expiration: object, expiration_ttl: object, now: float, limits: Limits, op: str = "PUT"
) -> int | None:
    """Absolute expiry in epoch seconds, or None; expiration_ttl wins over expiration."""
    return expiry_and_ttl(expiration, expiration_ttl, now, limits, op)[0]


def expiry_and_ttl(
    expiration: object, expiration_ttl: object, now: float, limits: Limits, op: str = "PUT"
) -> tuple[int | None, int | None]:
    """`expiry`, and the TTL in seconds when one was given (it wins over expiration)."""
    whole_now = math.floor(now)
    if expiration_ttl is not None:
        ttl = to_int32(expiration_ttl, "expiration_ttl")
        if ttl <= 0:
            raise KVValidationError(
                f"Invalid expiration_ttl of {ttl}. Please specify integer greater than 0.",
                status=400,
                op=op,
            )
        if ttl < limits.min_expiration_ttl:
            raise KVValidationError(
                f"Invalid expiration_ttl of {ttl}. "
                f"Expiration TTL must be at least {limits.min_expiration_ttl}.",
                status=400,
                op=op,
            )
        return whole_now + ttl, ttl
    if expiration is not None:
        at = to_int32(expiration, "expiration")
        if at <= whole_now:
            raise KVValidationError(
                f"Invalid expiration of {at}. Please specify integer greater than "
                "the current number of seconds since the UNIX epoch.",
                status=400,
                op=op,
            )
        if at < whole_now + limits.min_expiration_ttl:
            raise KVValidationError(
                f"Invalid expiration of {at}. Expiration times must be at least "
                f"{limits.min_expiration_ttl} seconds in the future.",
                status=400,
                op=op,
            )
        return at, None
    return None, None


def decode_value(raw: bytes, type: str) -> Any:
    if type == "text":
        return raw.decode("utf-8", "replace")
    if type == "json":
        try:
            return loads(raw)
        except ValueError as exc:
            raise KVValidationError(f"Value is not valid JSON: {exc}", status=400) from None
    return raw


def decode_metadata(text: str | None) -> Any:
    return None if text is None else loads(text)


def list_limit(limit: object) -> int:
    value = 0 if limit is None else to_int32(limit, "limit")
    if value <= 0:
        return LIST_LIMIT_MAX
    if value > LIST_LIMIT_MAX:
        raise KVValidationError(
            f"Invalid key_count_limit of {value}. Please specify an integer less than 1000.",
            status=400,
            op="GET",
        )
    return value


def encode_cursor(last_key: str) -> str:
    """Miniflare's cursor: base64 of the last returned key's UTF-8 bytes."""
    return base64.b64encode(last_key.encode("utf-8")).decode("ascii")


def decode_cursor(cursor: str | None) -> str:
    """The key to start strictly after; "" for the first page."""
    if cursor is None or cursor == "":
        return ""
    if not isinstance(cursor, str):
        raise TypeError(f"cursor must be str, not {type(cursor).__name__}")
    try:
        return base64.b64decode(cursor.encode("ascii"), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeError, ValueError):
        raise KVValidationError(f"Invalid cursor {cursor!r}.", status=400, op="GET") from None


def check_bulk_get(keys: Sequence[str], type: str, limits: Limits) -> list[str]:
    """Bulk-get rules; returns the distinct keys in request order."""
    if isinstance(keys, str | bytes):
        raise TypeError("get_many() takes a list of keys, not a single str")
    check_type(type, bulk=True)
    unique = list(dict.fromkeys(keys))
    if len(keys) > BULK_GET_MAX:
        raise KVValidationError(
            f"You can request a maximum of {BULK_GET_MAX} keys", status=400, op="GET_BULK"
        )
    if not keys:
        raise KVValidationError("You must request a minimum of 1 key", status=400, op="GET_BULK")
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
    if entry.get("base64"):
        if not isinstance(value, str):
            raise TypeError('"value" must be a base64 string when "base64" is true')
        try:
            value = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise KVValidationError("Value is not valid base64.", status=400, op="PUT") from None
    expires, ttl = expiry_and_ttl(entry.get("expiration"), entry.get("expiration_ttl"), now, limits)
    meta = metadata_json(entry.get("metadata"), limits)
    return Record(key, value_bytes(value, limits), expires, meta, ttl)


def bulk_records(entries: Iterable[object], now: float, limits: Limits) -> list[Record]:
    """Validate every entry first; raise naming the first bad ones, so nothing is written."""
    if isinstance(entries, str | bytes | Mapping):
        raise TypeError(f"put_many() takes a list of entries, not a {type(entries).__name__}")
    items = list(entries)
    if len(items) > BULK_WRITE_MAX:
        raise KVValidationError(
            f"A maximum of {BULK_WRITE_MAX} key-value pairs can be written at once; "
            f"got {len(items)}.",
            status=413,
            op="PUT",
        )
    records: list[Record] = []
    problems: list[tuple[int, Exception]] = []
    for index, entry in enumerate(items):
        try:
            records.append(entry_record(entry, now, limits))
        except (KVValidationError, TypeError) as exc:
            problems.append((index, exc))
    if problems:
        _raise_bulk(problems, len(items), "PUT")
    return records


def bulk_delete_keys(keys: Iterable[object], limits: Limits) -> list[str]:
    if isinstance(keys, str | bytes):
        raise TypeError(f"delete_many() takes a list of keys, not a single {type(keys).__name__}")
    items = list(keys)
    if len(items) > BULK_WRITE_MAX:
        raise KVValidationError(
            f"A maximum of {BULK_WRITE_MAX} keys can be deleted at once; got {len(items)}.",
            status=413,
            op="DELETE",
        )
    problems: list[tuple[int, Exception]] = []
    for index, key in enumerate(items):
        try:
            if not isinstance(key, str):
                raise TypeError(f"key must be str, not {type(key).__name__}")
            check_server_key(key, "DELETE", limits)
        except (KVValidationError, TypeError) as exc:
            problems.append((index, exc))
    if problems:
        _raise_bulk(problems, len(items), "DELETE")
    return [key for key in items if isinstance(key, str)]


def _raise_bulk(problems: list[tuple[int, Exception]], total: int, op: str) -> None:
    first_index, first = problems[0]
    named = "; ".join(f"entry {i}: {exc}" for i, exc in problems[:_MAX_ERRORS_NAMED])
    more = len(problems) - _MAX_ERRORS_NAMED
    suffix = f"; and {more} more" if more > 0 else ""
    text = f"{len(problems)} of {total} entries are invalid, nothing was written: {named}{suffix}"
    if isinstance(first, KVValidationError):
        raise KVValidationError(text, status=first.status) from first
    raise TypeError(text) from first
