"""The store contract: Workers KV's API over a handful of backend primitives.

`KVStore` does every check (keys, values, TTLs, metadata, limits, cursors) once,
so a backend only stores validated `Record`s and answers lookups. Backends must
guarantee:

- expired rows are never returned or listed (expired means `expiration <= clock()`);
- a put replaces value, expiry and metadata together;
- `_list` orders keys by UTF-8 bytes and starts strictly after `start_after`;
- `_put_many` and `_delete_many` apply all or nothing;
- where `atomic` is True, `_put_if_absent` and `_delete_if_equals` are atomic
  across every process and machine that shares the store;
- driver failures surface as `KVBackendError` carrying the cause.

Stores whose server keeps its own cursors or reads bulk values by type (Workers
KV over REST or its binding) override the `_list_page` and `_read_values` / `_read_entries` hooks.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from enum import Enum
from types import TracebackType
from typing import Any, ClassVar, Final

from . import validation as v
from ._json import loads
from .errors import KVValidationError
from .limits import Limits
from .meter import Meter, Tally, check_meter
from .types import KeyInfo, KVEntry, ListPage, Record

__all__ = ["NOT_READY", "Clock", "KVStore", "NotReady"]

Clock = Callable[[], float]
# Aliases made before the class body, where `list` names the method.
_KeyList = list[KeyInfo]
_StrList = list[str]
_RecordList = list[Record]


class NotReady(Enum):
    """The type of NOT_READY (an enum member, so type checkers narrow `is` tests)."""

    NOT_READY = "NOT_READY"


#: What `_peek_value` answers when the value needs an await (`_get_value`).
NOT_READY: Final = NotReady.NOT_READY


class KVStore(ABC):
    """A Workers-KV namespace. Use through `kvcache.open_kv`."""

    #: Backend name used in errors and URLs.
    backend: ClassVar[str] = "abstract"
    #: True when put_if_absent / delete_if_equals are atomic across processes.
    atomic: ClassVar[bool] = False
    #: True when a write is visible at once to every other store on the same URL;
    #: Workers KV may serve the old value elsewhere for 60 s (eventual consistency).
    consistent: ClassVar[bool] = True
    #: True when `namespace=` selects its own keyspace on one URL; False where the
    #: URL itself names the namespace (cloudflare://) and the argument is ignored.
    separate_namespaces: ClassVar[bool] = True
    #: True when `Limits.relaxed()` can apply; False where a server enforces
    #: Workers KV's own limits whatever the client allows.
    relaxable: ClassVar[bool] = True
    #: Seconds to leave between two writes of one key: Workers KV refuses a second write
    #: within a second with 429 (1 write per second per key). 0: no such limit.
    same_key_write_interval: ClassVar[float] = 0.0

    def __init__(
        self,
        *,
        namespace: str = "default",
        limits: Limits | None = None,
        clock: Clock = time.time,
        meter: Meter | None = None,
    ) -> None:
        if not isinstance(namespace, str) or not namespace:
            raise TypeError("namespace must be a non-empty str")
        if limits is not None and not isinstance(limits, Limits):
            raise TypeError(f"limits must be a kvcache.Limits, not {type(limits).__name__}")
        if not callable(clock):
            raise TypeError(f"clock must be callable, not {type(clock).__name__}")
        self.namespace = namespace
        self.limits = limits if limits is not None else Limits.cloudflare()
        self.clock = clock
        self._tally: Tally | None = None
        self.meter = meter

    @property
    def meter(self) -> Meter | None:
        """The `Meter` this store counts its billable operations into (None: not counted)."""
        return self._meter

    @meter.setter
    def meter(self, meter: Meter | None) -> None:
        checked = check_meter(meter)
        self._meter = checked
        self._tally = None if checked is None else checked.tally(self.namespace)

    # -- reads -------------------------------------------------------------

    async def get(self, key: str, type: str = "text", *, cache_ttl: int | None = None) -> Any:
        """The value as str ("text"), parsed JSON ("json") or bytes; None if absent or expired."""
        limits = self.limits
        if not (key.__class__ is str and 2 < len(key) <= limits.max_key_bytes and key.isascii()):
            v.check_key(key, "GET", limits)  # check_key's own fast case, inlined
        if type != "text":
            v.check_type(type)
        if cache_ttl is not None:
            v.check_cache_ttl(cache_ttl, "GET", self.limits)
        raw = self._peek_value(key)
        if raw is NOT_READY:
            raw = await self._get_value(key)
        tally = self._tally
        if tally is not None:
            tally.read(key)
        if raw is None:
            return None
        if type == "text":
            return raw.decode("utf-8", "replace")
        return v.decode_value(raw, type)

    async def get_with_metadata(
        self, key: str, type: str = "text", *, cache_ttl: int | None = None
    ) -> KVEntry:
        """Value and metadata together; `KVEntry(None, None)` if absent or expired."""
        v.check_key(key, "GET", self.limits)
        v.check_type(type)
        v.check_cache_ttl(cache_ttl, "GET", self.limits)
        found = await self._get_entry(key)
        if self._tally is not None:
            self._tally.read(key)
        if found is None:
            return KVEntry(None, None)
        raw, meta = found
        return KVEntry(v.decode_value(raw, type), v.decode_metadata(meta, key))

    async def get_many(
        self, keys: Iterable[str], type: str = "text", *, cache_ttl: int | None = None
    ) -> dict[str, Any]:
        """Up to 100 keys (any iterable) in one call; each maps to its value or None.

        `type` is "text", "json" or "bytes" (the binding's bulk read has no bytes;
        kvcache's has, and over Cloudflare's REST API it costs one read per key).
        """
        unique = v.check_bulk_get(keys, type, self.limits)
        if cache_ttl is not None:
            v.check_cache_ttl(cache_ttl, "GET_BULK", self.limits)
        found = await self._read_values(unique, type)
        if self._tally is not None:
            self._tally.reads(unique)
        return self._bulk_values(found, type, unique)

    async def get_many_with_metadata(
        self, keys: Iterable[str], type: str = "text", *, cache_ttl: int | None = None
    ) -> dict[str, KVEntry | None]:
        """Bulk get with metadata; a missing key maps to None, not to an empty entry."""
        unique = v.check_bulk_get(keys, type, self.limits)
        if cache_ttl is not None:
            v.check_cache_ttl(cache_ttl, "GET_BULK", self.limits)
        found = await self._read_entries(unique, type)
        if self._tally is not None:
            self._tally.reads(unique)
        values = self._bulk_values({key: raw for key, (raw, _) in found.items()}, type, unique)
        meta = v.decode_metadata
        return {
            key: KVEntry(values[key], meta(found[key][1], key)) if key in found else None
            for key in unique
        }

    @staticmethod
    def _bulk_values(found: dict[str, bytes], type: str, keys: list[str]) -> dict[str, Any]:
        """Each of `keys` -> its decoded value, or None when not found; one pass.

        A non-JSON value fails the whole json call.
        """
        v.check_bulk_size(sum(map(len, found.values())))
        get = found.get
        if type == "bytes":
            return {key: get(key) for key in keys}
        if type == "text":
            return {
                key: None if (raw := get(key)) is None else raw.decode("utf-8", "replace")
                for key in keys
            }
        try:
            return {key: None if (raw := get(key)) is None else loads(raw) for key in keys}
        except ValueError:
            raise KVValidationError(
                "At least one of the requested keys corresponds to a non-json value",
                status=400,
                op="GET_BULK",
            ) from None

    async def list(
        self, prefix: str | None = None, limit: int | None = 1000, cursor: str | None = None
    ) -> ListPage:
        """One page of keys in UTF-8 byte order; follow `cursor` until `list_complete`."""
        prefix = v.check_prefix(prefix, self.limits)
        count = v.list_limit(limit)
        page = await self._list_page(prefix, count, cursor)
        if self._tally is not None:
            self._tally.lists(prefix, len(page.keys))
        return page

    async def _list_page(self, prefix: str, limit: int, cursor: str | None) -> ListPage:
        """A page from `_list`, with kvcache's own cursor (base64 of the last key)."""
        start_after = v.decode_cursor(cursor)
        keys, more = await self._list(prefix, start_after, limit)
        if more and keys:
            return ListPage(keys, False, v.encode_cursor(keys[-1].name))
        return ListPage(keys, True, None)

    async def _read_values(self, keys: _StrList, type: str) -> dict[str, bytes]:
        """`_get_values`; a store whose bulk read depends on the type overrides it."""
        return await self._get_values(keys)

    async def _read_entries(self, keys: _StrList, type: str) -> dict[str, tuple[bytes, str | None]]:
        """`_get_entries`; a store whose bulk read depends on the type overrides it."""
        return await self._get_entries(keys)

    # -- writes ------------------------------------------------------------

    async def put(
        self,
        key: str,
        value: str | bytes,
        *,
        expiration: int | None = None,
        expiration_ttl: int | None = None,
        metadata: Any = None,
    ) -> None:
        """Replace the key's value, expiry and metadata together."""
        await self._put(self._record(key, value, expiration, expiration_ttl, metadata))
        if self._tally is not None:
            self._tally.write(key)

    def _record(
        self,
        key: str,
        value: object,
        expiration: object,
        expiration_ttl: object,
        metadata: object,
    ) -> Record:
        """Validate in Workers KV's order: key, expiry, metadata size, value size."""
        v.check_key(key, "PUT", self.limits)
        if expiration is None and expiration_ttl is None:
            expires = ttl = None
        else:
            expires, ttl = v.expiry_and_ttl(expiration, expiration_ttl, self.clock(), self.limits)
        meta = v.metadata_json(metadata, self.limits)
        return Record(key, v.value_bytes(value, self.limits), expires, meta, ttl)

    async def delete(self, key: str) -> None:
        """Remove the key; an absent key is not an error."""
        v.check_key(key, "DELETE", self.limits)
        await self._delete(key)
        if self._tally is not None:
            self._tally.deletes((key,))

    async def put_many(self, entries: Iterable[Any]) -> None:
        """Write up to 10,000 wrangler-style entries (any iterable) all or nothing."""
        records = v.bulk_records(entries, self.clock(), self.limits)
        if records:
            await self._put_many(records)
            if self._tally is not None:
                self._tally.writes(record.key for record in records)

    async def delete_many(self, keys: Iterable[str]) -> None:
        """Delete up to 10,000 keys (any iterable) in one all-or-nothing step."""
        checked = v.bulk_delete_keys(keys, self.limits)
        if checked:
            await self._delete_many(checked)
            if self._tally is not None:
                self._tally.deletes(checked)

    async def put_if_absent(
        self,
        key: str,
        value: str | bytes,
        *,
        expiration: int | None = None,
        expiration_ttl: int | None = None,
        metadata: Any = None,
    ) -> bool:
        """Write only if no live value exists; True if this call wrote it.

        Metered as Workers KV would bill it: a read, and a write when it wrote.
        """
        wrote = await self._put_if_absent(
            self._record(key, value, expiration, expiration_ttl, metadata)
        )
        if self._tally is not None:
            self._tally.read(key)
            if wrote:
                self._tally.write(key)
        return wrote

    async def delete_if_equals(self, key: str, value: str | bytes) -> bool:
        """Delete only if the live value equals `value` byte for byte; True if deleted.

        Metered as a read, and a delete when it deleted.
        """
        v.check_key(key, "DELETE", self.limits)
        data = v.value_bytes(value, self.limits, "DELETE")
        deleted = await self._delete_if_equals(key, data)
        if self._tally is not None:
            self._tally.read(key)
            if deleted:
                self._tally.deletes((key,))
        return deleted

    async def stored_bytes(self) -> int | None:
        """Bytes of the namespace's live keys, values and metadata; None if the store cannot tell.

        A local scan of the store (not a billable operation, not metered); on
        Workers KV (REST or binding) None: counting would itself cost a read per key.
        """
        return await self._stored_bytes()

    # -- lifecycle ---------------------------------------------------------

    async def close(self) -> None:
        """Release connections and files. Idempotent."""
        await self._close()

    async def __aenter__(self) -> KVStore:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} namespace={self.namespace!r}>"

    # -- backend primitives ------------------------------------------------

    def _peek_value(self, key: str) -> bytes | None | NotReady:
        """The live value at once, if the backend can read it without waiting; else NOT_READY.

        `get`'s fast path: a store whose point read is a synchronous call (SQLite on
        the loop's thread) answers here and skips `_get_value`'s coroutine.
        """
        return NOT_READY

    async def _stored_bytes(self) -> int | None:
        """UTF-8 bytes of live keys + values + metadata in the namespace; None if unknown."""
        return None

    @abstractmethod
    async def _get_value(self, key: str) -> bytes | None:
        """The live value's bytes, or None."""

    @abstractmethod
    async def _get_entry(self, key: str) -> tuple[bytes, str | None] | None:
        """The live value's bytes and metadata JSON, or None."""

    @abstractmethod
    async def _get_entries(self, keys: _StrList) -> dict[str, tuple[bytes, str | None]]:
        """Live values and metadata of the given distinct keys; absent keys are left out."""

    async def _get_values(self, keys: _StrList) -> dict[str, bytes]:
        """Live values (no metadata) of the given distinct keys, for `get_many`.

        `_get_entries` without the metadata by default; a backend may read less.
        """
        return {key: raw for key, (raw, _) in (await self._get_entries(keys)).items()}

    @abstractmethod
    async def _list(self, prefix: str, start_after: str, limit: int) -> tuple[_KeyList, bool]:
        """Up to `limit` live keys > start_after with the prefix, and whether more follow."""

    @abstractmethod
    async def _put(self, record: Record) -> None:
        """Store the record, replacing whatever was there."""

    @abstractmethod
    async def _put_many(self, records: _RecordList) -> None:
        """Store all records or none; a later record for the same key wins."""

    @abstractmethod
    async def _delete(self, key: str) -> None:
        """Remove the key if present."""

    @abstractmethod
    async def _delete_many(self, keys: _StrList) -> None:
        """Remove all the keys or none."""

    @abstractmethod
    async def _put_if_absent(self, record: Record) -> bool:
        """Store the record only if no live value exists; True if stored."""

    @abstractmethod
    async def _delete_if_equals(self, key: str, value: bytes) -> bool:
        """Delete the key only if its live value is exactly `value`; True if deleted."""

    @abstractmethod
    async def _close(self) -> None:
        """Release resources. Called once or more."""
