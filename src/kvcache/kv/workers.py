"""The store contract inside a Python Worker, over the Workers KV binding: `WorkersKV(env.CACHE)`.

In a Python Worker (Pyodide in workerd) a KV binding is the raw JS object, so
`WorkersKV` converts at the boundary and nowhere else:

- options travel as one JS object built with `JSON.parse` of compact JSON (a
  Python dict passed as a keyword arrives in JS as an empty object, and metadata
  is JSON text already, validated and sized as `JSON.stringify` writes it);
- bytes go out through `to_js` (a Uint8Array) and come back as ArrayBuffers;
- JS `null` reads as absent, whether Pyodide turns it into `None` (0.26, the
  version older workerd embeds) or into `pyodide.ffi.jsnull` (0.28+);
- results with nested values (listings, metadata) come back through
  `JSON.stringify`, so numbers, strings and objects keep their JSON types;
- a rejected call becomes `KVValidationError` when the binding refused the
  arguments (`TypeError`, `KV PUT failed: 400/413/414 ...`) and `KVBackendError`
  otherwise (429 too many writes to one key, 5xx, anything else).

`js` and `pyodide` are imported on first use, so this module imports anywhere.
The binding has no bulk write or delete and no conditional write: put_many and
delete_many make one binding call per key (a Worker may make 1,000 KV calls per
request; bulk loads belong to the REST backend), reads of several keys are
single reads in parallel, and `atomic` / `consistent` are False, so `Idempotency`
here needs `best_effort=True`.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable
from typing import Any, ClassVar

from ._best_effort import SingleKeyFallbacks
from ._json import dumps, loads
from ._pages import fill_page
from .base import Clock, KVStore
from .errors import KVBackendError, KVValidationError
from .limits import Limits, check_server_limits
from .meter import Meter
from .types import KeyInfo, ListPage, Record

__all__ = ["WorkersKV"]

_FAILED = re.compile(r"KV (\w+) failed: (\d{3}) (.*)", re.DOTALL)
_CONCURRENT = 16


def _ffi() -> Any:
    import pyodide.ffi

    return pyodide.ffi


def _is_null(value: object) -> bool:
    return value is None or type(value).__name__ in ("JsNull", "JsUndefined")


def map_js_error(op: str, exc: BaseException) -> Exception:
    """The kvcache error for a rejected binding call (its message is the JS error's)."""
    text = str(exc)
    found = _FAILED.search(text)
    if found is not None:
        status = int(found.group(2))
        if status in (400, 404, 413, 414):
            return KVValidationError(found.group(3), status=status, op=found.group(1))
        return KVBackendError(f"{op} failed: {found.group(0)}", backend="workers", cause=exc)
    if "TypeError" in text or "RangeError" in text:
        return KVValidationError(text.split(": ", 1)[-1], status=400)
    return KVBackendError(f"{op} failed: {text}", backend="workers", cause=exc)


class WorkersKV(SingleKeyFallbacks, KVStore):
    """A KV namespace binding (`env.CACHE`) as a kvcache store. Borrows the binding."""

    backend: ClassVar[str] = "workers"
    atomic: ClassVar[bool] = False
    consistent: ClassVar[bool] = False
    separate_namespaces: ClassVar[bool] = False
    relaxable: ClassVar[bool] = False
    same_key_write_interval: ClassVar[float] = 1.0

    def __init__(
        self,
        binding: Any,
        *,
        namespace: str = "binding",
        limits: Limits | None = None,
        clock: Clock = time.time,
        meter: Meter | None = None,
    ) -> None:
        super().__init__(namespace=namespace, limits=limits, clock=clock, meter=meter)
        check_server_limits(self.limits, "WorkersKV (a KV binding)")
        self.binding = binding
        self._closed = False

    async def _call(self, op: str, call: Awaitable[Any]) -> Any:
        if self._closed:
            raise KVBackendError("store is closed", backend=self.backend)
        try:
            return await call
        except Exception as exc:
            if type(exc).__name__ != "JsException":
                raise
            raise map_js_error(op, exc) from exc

    def _js_json(self, text: str) -> Any:
        from js import JSON

        return JSON.parse(text)

    def _py_json(self, value: Any) -> Any:
        from js import JSON

        return loads(JSON.stringify(value))

    async def _get_value(self, key: str) -> bytes | None:
        self._check()
        found = await self._call("GET", self.binding.get(key, "arrayBuffer"))
        return None if _is_null(found) else bytes(found.to_bytes())

    async def _get_entry(self, key: str) -> tuple[bytes, str | None] | None:
        self._check()
        found = await self._call("GET", self.binding.getWithMetadata(key, "arrayBuffer"))
        if _is_null(found) or _is_null(found.value):
            return None
        meta = found.metadata
        text = None if _is_null(meta) else dumps(self._py_json(meta), "metadata")
        return bytes(found.value.to_bytes()), text

    async def _get_entries(self, keys: list[str]) -> dict[str, tuple[bytes, str | None]]:
        return await self._single_reads(keys, metadata=True)

    async def _get_values(self, keys: list[str]) -> dict[str, bytes]:
        found = await self._single_reads(keys, metadata=False)
        return {key: raw for key, (raw, _) in found.items()}

    async def _list_page(self, prefix: str, limit: int, cursor: str | None) -> ListPage:
        self._check()
        return await fill_page(self._fetch_keys, prefix, limit, cursor)

    async def _fetch_keys(
        self, prefix: str, cursor: str | None, count: int
    ) -> tuple[list[KeyInfo], str | None]:
        options: dict[str, Any] = {"limit": count}
        if prefix:
            options["prefix"] = prefix
        if cursor:
            options["cursor"] = cursor
        page = await self._call("GET", self.binding.list(self._js_json(dumps(options))))
        data = self._py_json(page)
        keys = [KeyInfo(k["name"], k.get("expiration"), k.get("metadata")) for k in data["keys"]]
        return keys, (None if data.get("list_complete", True) else data.get("cursor") or None)

    async def _list(self, prefix: str, start_after: str, limit: int) -> tuple[list[KeyInfo], bool]:
        raise NotImplementedError("WorkersKV lists with the binding's cursors (_list_page)")

    def _options(self, record: Record) -> Any:
        parts = []
        if record.ttl is not None:
            parts.append(f'"expirationTtl":{record.ttl}')
        elif record.expiration is not None:
            parts.append(f'"expiration":{record.expiration}')
        if record.metadata is not None:
            parts.append(f'"metadata":{record.metadata}')
        return self._js_json("{" + ",".join(parts) + "}")

    async def _put(self, record: Record) -> None:
        self._check()
        value = _ffi().to_js(record.value)
        await self._call("PUT", self.binding.put(record.key, value, self._options(record)))

    async def _put_many(self, records: list[Record]) -> None:
        latest = {record.key: record for record in records}  # a later entry wins
        await self._each([self._put(record) for record in latest.values()])

    async def _delete(self, key: str) -> None:
        self._check()
        await self._call("DELETE", self.binding.delete(key))

    async def _delete_many(self, keys: list[str]) -> None:
        await self._each([self._delete(key) for key in dict.fromkeys(keys)])

    async def _each(self, calls: list[Awaitable[None]]) -> None:
        gate = asyncio.Semaphore(_CONCURRENT)

        async def one(call: Awaitable[None]) -> None:
            async with gate:
                await call

        await asyncio.gather(*(one(call) for call in calls))

    def _check(self) -> None:
        if self._closed:
            raise KVBackendError("store is closed", backend=self.backend)

    async def _close(self) -> None:
        self._closed = True
