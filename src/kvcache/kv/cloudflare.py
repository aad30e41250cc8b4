"""Cloudflare Workers KV itself, over its REST API: `cloudflare://ACCOUNT_ID/NAMESPACE_ID`.

Built on httpx rather than the official `cloudflare` SDK (5.x). Measured here
(bench/bench_cloudflare.py, BENCHMARKS.md): end to end against the Miniflare test
Worker the two are alike, but the client's own cost of a 10,000-pair bulk write
is about 88 ms median with httpx and 437 ms through the SDK's typed request
models (a bulk get of 100: 2.8 ms and 5.7 ms). And the SDK would still leave
kvcache everything that matters here: its retries (twice on 408/409/429/5xx)
know neither the account's 1,200-requests-per-5-minutes budget nor the 5-minute
block after a 429, it neither splits bulk writes nor retries unsuccessful keys,
and it brings pydantic, anyio and distro for what is one HTTP client.

Each operation maps to one REST route:

- get -> the values route (raw bytes); get_with_metadata adds the metadata route;
- get_many -> bulk get (at most 100 keys, text only; values come back as text,
  so type="bytes" falls back to single reads, which keep every byte);
- put -> a raw body, or multipart (`value`, `metadata`) when there is metadata,
  expiry in the query string (a TTL is sent as a TTL, so the server's clock
  counts it);
- put_many -> bulk write, split so no request body passes 100 MB; keys reported
  in `unsuccessful_keys` are written once more, then named in KVBackendError;
- delete_many -> bulk delete; list -> keys with the server's cursor.

Workers KV is eventually consistent and has no conditional write: `atomic` and
`consistent` are False, put_if_absent / delete_if_equals read then write, and
`Idempotency` over this store needs `best_effort=True`. The server enforces
Workers KV's limits, so only `Limits.cloudflare()` (or stricter) applies.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import ClassVar
from urllib.parse import quote, urlsplit

import httpx

from ._best_effort import SingleKeyFallbacks
from ._cloudflare_bulk import BULK_BODY_MAX, bulk_entry, split_bodies, unsuccessful
from ._cloudflare_http import RATE_LIMIT, Api, Pacer, Sleep
from ._json import dumps
from ._pages import fill_page
from ._url import url_options
from .base import Clock, KVStore
from .errors import KVBackendError, KVConfigError, KVValidationError
from .limits import Limits, check_server_limits
from .meter import Meter
from .types import KeyInfo, ListPage, Record

__all__ = ["DEFAULT_API_URL", "CloudflareKV", "from_url"]

DEFAULT_API_URL = "https://api.cloudflare.com/client/v4"
TOKEN_ENV = "CLOUDFLARE_API_TOKEN"
#: wrangler's variable for another API root; the default of `api_url=` when set.
API_BASE_ENV = "CLOUDFLARE_API_BASE_URL"
_LIST_PAGE_MIN = 10
#: Bulk get answers 413 past 25 MB of values: the binding's error, a caller's matter.
_BULK_GET_REFUSALS = {
    413: lambda text: KVValidationError(
        "Total size of request exceeds the limit of 25MB", status=413, op="GET_BULK"
    )
}
#: A listing with a cursor the server refuses: the cursor was not one it handed out.
_CURSOR_REFUSALS = {
    400: lambda text: KVValidationError(f"Invalid cursor ({text})", status=400, op="GET")
}


class CloudflareKV(SingleKeyFallbacks, KVStore):
    """One Workers KV namespace of one account, reached over Cloudflare's REST API.

    Owns its httpx client unless one is passed in (`client=`), which it then borrows.
    `pacer` and `sleep` replace the request budget and the waits (tests move them
    with a fake clock).
    """

    #: The largest bulk-write body sent in one request (Cloudflare's 100 MB).
    bulk_body_max: ClassVar[int] = BULK_BODY_MAX

    backend: ClassVar[str] = "cloudflare"
    atomic: ClassVar[bool] = False
    consistent: ClassVar[bool] = False
    separate_namespaces: ClassVar[bool] = False
    relaxable: ClassVar[bool] = False
    same_key_write_interval: ClassVar[float] = 1.0

    def __init__(
        self,
        account_id: str,
        namespace_id: str,
        *,
        api_token: str,
        api_url: str = DEFAULT_API_URL,
        rate_limit: int = RATE_LIMIT,
        limits: Limits | None = None,
        clock: Clock = time.time,
        client: httpx.AsyncClient | None = None,
        pacer: Pacer | None = None,
        sleep: Sleep = asyncio.sleep,
        meter: Meter | None = None,
    ) -> None:
        super().__init__(namespace=namespace_id, limits=limits, clock=clock, meter=meter)
        check_server_limits(self.limits, "cloudflare://")
        self.account_id = account_id
        self._owns_client = client is None
        if client is None:
            client = httpx.AsyncClient(timeout=httpx.Timeout(120.0, connect=10.0))
        base = f"{api_url.rstrip('/')}/accounts/{quote(account_id, safe='')}"
        base += f"/storage/kv/namespaces/{quote(namespace_id, safe='')}"
        if pacer is None:
            pacer = Pacer(rate_limit, sleep=sleep)
        self.api = Api(client, base, api_token, pacer, sleep=sleep)
        self._closed = False

    def __repr__(self) -> str:
        return f"<CloudflareKV account={self.account_id!r} namespace={self.namespace!r}>"

    @property
    def requests(self) -> int:
        """HTTP requests sent so far, retries included."""
        return self.api.requests

    def _check_open(self) -> None:
        if self._closed:
            raise KVBackendError("store is closed", backend=self.backend)

    @staticmethod
    def _key_path(route: str, key: str) -> str:
        return f"/{route}/{quote(key, safe='')}"

    # -- reads ---------------------------------------------------------------

    async def _get_value(self, key: str) -> bytes | None:
        self._check_open()
        reply = await self.api.call(
            "GET", self._key_path("values", key), "GET", write=False, absent_ok=True, envelope=False
        )
        return None if reply is None else reply.response.content

    async def _get_metadata(self, key: str) -> tuple[bool, str | None]:
        reply = await self.api.call(
            "GET", self._key_path("metadata", key), "GET metadata", write=False, absent_ok=True
        )
        if reply is None:
            return False, None
        return True, None if reply.result is None else dumps(reply.result, "metadata")

    async def _get_entry(self, key: str) -> tuple[bytes, str | None] | None:
        self._check_open()
        value, (found, meta) = await asyncio.gather(self._get_value(key), self._get_metadata(key))
        if value is None or not found:  # absent, or deleted between the two reads
            return None
        return value, meta

    async def _get_entries(self, keys: list[str]) -> dict[str, tuple[bytes, str | None]]:
        return await self._bulk_read(keys, "text", metadata=True)

    async def _read_values(self, keys: list[str], type: str) -> dict[str, bytes]:
        found = await self._bulk_read(keys, type, metadata=False)
        return {key: raw for key, (raw, _) in found.items()}

    async def _read_entries(
        self, keys: list[str], type: str
    ) -> dict[str, tuple[bytes, str | None]]:
        return await self._bulk_read(keys, type, metadata=True)

    async def _bulk_read(
        self, keys: list[str], type: str, *, metadata: bool
    ) -> dict[str, tuple[bytes, str | None]]:
        """One bulk get (text), or single reads for bytes, which bulk get cannot return."""
        self._check_open()
        if type == "bytes":
            return await self._single_reads(keys, metadata)
        body = {"keys": keys, "type": "text", "withMetadata": metadata}
        reply = await self.api.call(
            "POST", "/bulk/get", "GET_BULK", write=False, json=body, refusals=_BULK_GET_REFUSALS
        )
        assert reply is not None
        values = reply.result.get("values") if isinstance(reply.result, dict) else None
        if not isinstance(values, dict):
            raise KVBackendError(
                "GET_BULK failed: no result.values in the answer", backend="cloudflare"
            )
        found: dict[str, tuple[bytes, str | None]] = {}
        for key in keys:
            item = values.get(key)
            if item is None:
                continue
            if metadata:
                if not isinstance(item, dict):
                    raise KVBackendError(
                        "GET_BULK failed: an entry is not {value, metadata}", backend="cloudflare"
                    )
                meta = item.get("metadata")
                text = item.get("value")
                found[key] = (_text_bytes(text), None if meta is None else dumps(meta))
            else:
                found[key] = (_text_bytes(item), None)
        return found

    async def _list_page(self, prefix: str, limit: int, cursor: str | None) -> ListPage:
        self._check_open()
        return await fill_page(self._fetch_keys, prefix, limit, cursor, _LIST_PAGE_MIN)

    async def _fetch_keys(
        self, prefix: str, cursor: str | None, count: int
    ) -> tuple[list[KeyInfo], str | None]:
        params: dict[str, str | int] = {"limit": count}
        if prefix:
            params["prefix"] = prefix
        if cursor:
            params["cursor"] = cursor
        try:
            reply = await self.api.call("GET", "/keys", "GET keys", write=False, params=params)
        except KVBackendError as exc:
            if cursor and "HTTP 400" in str(exc):
                raise KVValidationError(f"Invalid cursor: {exc}", status=400, op="GET") from exc
            raise
        assert reply is not None
        rows = reply.result
        if not isinstance(rows, list) or not all(
            isinstance(row, dict) and isinstance(row.get("name"), str) for row in rows
        ):
            raise KVBackendError(
                "GET keys failed: the result is not a list of keys", backend="cloudflare"
            )
        keys = [KeyInfo(row["name"], row.get("expiration"), row.get("metadata")) for row in rows]
        info = reply.envelope.get("result_info") if reply.envelope is not None else None
        after = info.get("cursor") if isinstance(info, dict) else None
        return keys, (after or None)

    async def _list(self, prefix: str, start_after: str, limit: int) -> tuple[list[KeyInfo], bool]:
        raise NotImplementedError("CloudflareKV lists with the server's cursors (_list_page)")

    # -- writes --------------------------------------------------------------

    async def _put(self, record: Record) -> None:
        self._check_open()
        params = _expiry_params(record)
        path = self._key_path("values", record.key)
        if record.metadata is None:
            await self.api.call("PUT", path, "PUT", write=True, params=params, content=record.value)
            return
        files = {"value": ("value", record.value, "application/octet-stream")}
        await self.api.call(
            "PUT",
            path,
            "PUT",
            write=True,
            params=params,
            data={"metadata": record.metadata},
            files=files,
        )

    async def _put_many(self, records: list[Record]) -> None:
        self._check_open()
        latest = {record.key: record for record in records}  # a later entry wins
        entries = [bulk_entry(record) for record in latest.values()]
        for body in split_bodies(entries, self.bulk_body_max):
            failed = await self._bulk("PUT", "/bulk", body)
            if failed:
                again = [bulk_entry(latest[key]) for key in failed if key in latest]
                still = await self._bulk("PUT", "/bulk", "[" + ",".join(again) + "]")
                if still:
                    raise unsuccessful("PUT bulk", "written", still)

    async def _delete(self, key: str) -> None:
        self._check_open()
        await self.api.call("DELETE", self._key_path("values", key), "DELETE", write=True)

    async def _delete_many(self, keys: list[str]) -> None:
        self._check_open()
        unique = list(dict.fromkeys(keys))
        failed = await self._bulk("POST", "/bulk/delete", dumps(unique))
        if failed:
            still = await self._bulk("POST", "/bulk/delete", dumps(failed))
            if still:
                raise unsuccessful("DELETE bulk", "deleted", still)

    async def _bulk(self, method: str, path: str, body: str) -> list[str]:
        """Send one bulk body; the keys the answer lists as unsuccessful."""
        reply = await self.api.call(
            method,
            path,
            f"{method} {path}",
            write=True,
            content=body.encode("utf-8"),
            headers={"Content-Type": "application/json"},
        )
        assert reply is not None
        result = reply.result
        failed = result.get("unsuccessful_keys") if isinstance(result, dict) else None
        return [key for key in failed if isinstance(key, str)] if isinstance(failed, list) else []

    async def _close(self) -> None:
        if not self._closed:
            self._closed = True
            if self._owns_client:
                await self.api.client.aclose()


def _text_bytes(value: object) -> bytes:
    if not isinstance(value, str):
        raise KVBackendError("GET_BULK failed: a value is not text", backend="cloudflare")
    return value.encode("utf-8", "surrogatepass")


def _expiry_params(record: Record) -> dict[str, int]:
    if record.ttl is not None:
        return {"expiration_ttl": record.ttl}
    if record.expiration is not None:
        return {"expiration": record.expiration}
    return {}


async def from_url(
    url: str,
    *,
    namespace: str,
    limits: Limits | None,
    clock: Clock,
    api_token: str | None = None,
    client: httpx.AsyncClient | None = None,
) -> CloudflareKV:
    """cloudflare://ACCOUNT_ID/NAMESPACE_ID[?api_url=BASE&rate_limit=N].

    `namespace` is checked but not used: the URL names the namespace. The token is
    `api_token=` or the CLOUDFLARE_API_TOKEN environment variable; the API root is
    `api_url`, else CLOUDFLARE_API_BASE_URL (as for wrangler), else Cloudflare's.
    """
    if not isinstance(namespace, str) or not namespace:
        raise TypeError("namespace must be a non-empty str")
    parts = urlsplit(url)
    account = parts.netloc
    namespace_id = parts.path.strip("/")
    if not account or not namespace_id or "/" in namespace_id or "@" in account:
        raise KVConfigError(
            f"cloudflare URL {url.split('?', 1)[0]!r} must be cloudflare://ACCOUNT_ID/NAMESPACE_ID"
        )
    options = url_options(url)
    unknown = sorted(set(options) - {"api_url", "rate_limit"})
    if unknown:
        raise KVConfigError(
            f"cloudflare URL: unknown option {unknown[0]!r}; the options are api_url, rate_limit"
        )
    api_url = options.get("api_url") or os.environ.get(API_BASE_ENV) or DEFAULT_API_URL
    if not api_url.startswith(("http://", "https://")):
        raise KVConfigError(f"cloudflare URL: api_url must be an http(s) URL, not {api_url!r}")
    rate = options.get("rate_limit", str(RATE_LIMIT))
    if not rate.isdigit() or int(rate) < 1:
        raise KVConfigError(
            f"cloudflare URL: rate_limit must be a positive whole number of requests per "
            f"5 minutes, not {rate!r}"
        )
    token = api_token if api_token is not None else os.environ.get(TOKEN_ENV, "")
    if not token:
        raise KVConfigError(
            f"cloudflare:// needs an API token: set {TOKEN_ENV} to a token with the "
            "'Workers KV Storage Read' and 'Workers KV Storage Write' permissions"
        )
    return CloudflareKV(
        account,
        namespace_id,
        api_token=token,
        api_url=api_url,
        rate_limit=int(rate),
        limits=limits,
        clock=clock,
        client=client,
    )
