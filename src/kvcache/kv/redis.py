"""A namespace on a Redis or Valkey server (or Redis Cluster), shared by every machine.

Reads are plain commands: `get` is one GET of a packed record, `get_many` one MGET.
Every write and every listing is one Lua script, so a value and its index entries
change together or not at all, across all processes and machines. Redis expires
values natively (PX); the index entries of expired keys are dropped by the scripts
that meet them. Layout and record format: `_redis_format`; scripts: `_redis_scripts`.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable
from typing import Any, ClassVar, TypeVar

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import NoScriptError

from . import _redis_scripts as lua
from ._redis_client import DRIVER_ERRORS, Settings, backend_error, open_link
from ._redis_format import (
    KeySpace,
    lex_range,
    pack,
    unpack,
    unpack_header,
    unpack_many,
    values_many,
)
from ._redis_link import Arg, ClientLink, Link
from ._url import redact_url
from .base import Clock, KVStore
from .errors import KVBackendError
from .limits import Limits
from .meter import Meter
from .types import KeyInfo, Record
from .validation import decode_metadata

__all__ = ["RedisStore", "from_url"]

T = TypeVar("T")

#: Index members a listing script may look at beyond the keys it returns.
LIST_SCAN_SLACK = 256
#: Every PURGE_EVERY-th write also drops up to PURGE_BATCH expired records.
PURGE_EVERY = 8
PURGE_BATCH = 32


class _Script:
    """A Lua script run by its SHA1, loaded again when the server has forgotten it."""

    __slots__ = ("sha", "source")

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()


_PUT = _Script(lua.PUT)
_PUT_MANY = _Script(lua.PUT_MANY)
_PUT_IF_ABSENT = _Script(lua.PUT_IF_ABSENT)
_DELETE = _Script(lua.DELETE)
_DELETE_MANY = _Script(lua.DELETE_MANY)
_DELETE_IF_EQUALS = _Script(lua.DELETE_IF_EQUALS)
_LIST = _Script(lua.LIST)
_STORED_BYTES = _Script(lua.STORED_BYTES)
#: Index members one STORED_BYTES call looks at (each call is short; Redis serves others between).
STORED_SCAN = 1000


class RedisStore(KVStore):
    """Workers KV semantics on Redis; atomic across every client of the server.

    `client` is a redis-py `Redis` or `RedisCluster` client, or the `Link` that
    `from_url` builds. The store owns it (and closes it) when `owns_client` is
    true, as `from_url` sets it; a client passed in by the caller is borrowed by
    default. `settings` holds the deadlines (see `_redis_client.Settings`).
    """

    backend: ClassVar[str] = "redis"
    atomic: ClassVar[bool] = True

    def __init__(
        self,
        client: Redis | RedisCluster | Link,
        *,
        url: str = "redis://",
        namespace: str = "default",
        limits: Limits | None = None,
        clock: Clock = time.time,
        owns_client: bool = False,
        settings: Settings | None = None,
        meter: Meter | None = None,
    ) -> None:
        super().__init__(namespace=namespace, limits=limits, clock=clock, meter=meter)
        self.url = redact_url(url)
        self._link = client if isinstance(client, Link) else ClientLink(client)
        self.settings = settings if settings is not None else Settings()
        self._read_timeout = self.settings.read_timeout
        self._owns_client = owns_client
        self._closed = False
        self._writes = 0
        self._keys = KeySpace(namespace)

    def __repr__(self) -> str:
        return f"<RedisStore {self.url} namespace={self.namespace!r}>"

    # -- plumbing ------------------------------------------------------------

    def _fail(self, exc: BaseException) -> KVBackendError:
        return backend_error(exc, self.url)

    def _closed_error(self) -> KVBackendError:
        return KVBackendError(f"store is closed ({self.url})", backend=self.backend)

    async def _run(self, script: _Script, args: list[Arg], size: int = 0, records: int = 1) -> Any:
        """The script's reply; KEYS are the namespace's index and expiry sets.

        `size` (bytes of values and names) and `records` (how many it writes or
        deletes) lengthen the call's deadline."""
        if self._closed:
            raise self._closed_error()
        link, keys = self._link, self._keys.scripts
        timeout = self.settings.write_deadline(size, records)
        try:
            try:
                return await link.evalsha(script.sha, keys, args, timeout)
            except NoScriptError:  # a restarted server, or SCRIPT FLUSH
                await link.script_load(script.source, timeout)
                return await link.evalsha(script.sha, keys, args, timeout)
        except DRIVER_ERRORS as exc:
            raise self._fail(exc) from exc

    def _purge(self) -> int:
        """How many expired records this write should drop (most writes: none)."""
        self._writes += 1
        return PURGE_BATCH if self._writes % PURGE_EVERY == 0 else 0

    def _alien(self, key: str, exc: ValueError) -> KVBackendError:
        return KVBackendError(
            f"key {key!r} holds a value kvcache did not write: {exc} ({self.url})",
            backend=self.backend,
            cause=exc,
        )

    def _write_args(self, record: Record, now: float) -> list[Arg]:
        """name, packed record, TTL in ms for Redis (0 = none), expiration."""
        if record.expiration is None:
            return [record.key, pack(record), 0, 0]
        ttl_ms = max(1, math.ceil((record.expiration - now) * 1000))
        return [record.key, pack(record), ttl_ms, record.expiration]

    # -- reads ---------------------------------------------------------------

    async def _fetch(self, key: str) -> tuple[bytes, str | None] | None:
        """The live value and metadata JSON; one GET."""
        if self._closed:
            raise self._closed_error()
        try:
            raw = await self._link.get(self._keys.value_prefix + key.encode(), self._read_timeout)
        except DRIVER_ERRORS as exc:
            raise self._fail(exc) from exc
        if raw is None:
            return None
        try:
            return unpack(raw, self.clock())
        except ValueError as exc:
            raise self._alien(key, exc) from exc

    async def _get_value(self, key: str) -> bytes | None:
        found = await self._fetch(key)
        return None if found is None else found[0]

    async def _get_entry(self, key: str) -> tuple[bytes, str | None] | None:
        return await self._fetch(key)

    async def _get_entries(self, keys: list[str]) -> dict[str, tuple[bytes, str | None]]:
        """Live values and metadata JSON; one MGET."""
        return await self._mget(keys, unpack_many)

    async def _get_values(self, keys: list[str]) -> dict[str, bytes]:
        """Live values only (get_many); one MGET."""
        return await self._mget(keys, values_many)

    async def _mget(
        self, keys: list[str], decode: Callable[[list[str], list[bytes | None], float], T]
    ) -> T:
        if self._closed:
            raise self._closed_error()
        try:
            raws = await self._link.mget(self._keys.value_prefix, keys, self._read_timeout)
        except DRIVER_ERRORS as exc:
            raise self._fail(exc) from exc
        try:
            return decode(keys, raws, self.clock())
        except ValueError as exc:
            raise KVBackendError(
                f"{exc}: kvcache did not write it ({self.url})", backend=self.backend, cause=exc
            ) from exc

    async def _list(self, prefix: str, start_after: str, limit: int) -> tuple[list[KeyInfo], bool]:
        low, high = lex_range(prefix, start_after)
        want = limit + 1
        keys: list[KeyInfo] = []
        while True:
            missing = want - len(keys)
            args: list[Arg] = [self._keys.value_prefix, self.clock(), low, high, missing]
            reply = await self._run(_LIST, [*args, missing + LIST_SCAN_SLACK])
            exhausted, last = reply[0], reply[1]
            for i in range(2, len(reply), 2):
                name = reply[i].decode()
                try:
                    expires, meta = unpack_header(reply[i + 1])
                except ValueError as exc:
                    raise self._alien(name, exc) from exc
                keys.append(KeyInfo(name, expires, decode_metadata(meta, name)))
            if len(keys) >= want:
                return keys[:limit], True
            if exhausted:
                return keys, False
            low = b"(" + last

    async def _stored_bytes(self) -> int | None:
        """Walk the namespace's index STORED_SCAN members a call (the header is not counted)."""
        total, low = 0, b"-"
        while True:
            args: list[Arg] = [self._keys.value_prefix, self.clock(), low, STORED_SCAN]
            exhausted, last, size = await self._run(_STORED_BYTES, args)
            total += int(size)
            if exhausted:
                return total
            low = b"(" + last

    # -- writes --------------------------------------------------------------

    def _single_write(self, record: Record) -> list[Arg]:
        """ARGV of the one-record scripts (PUT, PUT_IF_ABSENT)."""
        now = self.clock()
        return [self._keys.value_prefix, now, self._purge(), *self._write_args(record, now)]

    async def _put(self, record: Record) -> None:
        await self._run(_PUT, self._single_write(record), len(record.value))

    async def _put_many(self, records: list[Record]) -> None:
        now = self.clock()
        args: list[Arg] = [self._keys.value_prefix, now, PURGE_BATCH]
        size = 0
        for record in records:
            args.extend(self._write_args(record, now))
            size += len(record.key) + len(record.value)
        await self._run(_PUT_MANY, args, size, len(records))

    async def _delete(self, key: str) -> None:
        await self._run(_DELETE, [self._keys.value_prefix, key])

    async def _delete_many(self, keys: list[str]) -> None:
        args: list[Arg] = [self._keys.value_prefix, *keys]
        await self._run(_DELETE_MANY, args, sum(map(len, keys)), len(keys))

    async def _put_if_absent(self, record: Record) -> bool:
        args = self._single_write(record)
        return bool(await self._run(_PUT_IF_ABSENT, args, len(record.value)))

    async def _delete_if_equals(self, key: str, value: bytes) -> bool:
        args: list[Arg] = [self._keys.value_prefix, self.clock(), key, value]
        return bool(await self._run(_DELETE_IF_EQUALS, args, len(value)))

    async def _close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._owns_client:
            try:
                await self._link.aclose()
            except DRIVER_ERRORS:
                pass  # the pool is being dropped either way


async def from_url(
    url: str,
    *,
    namespace: str,
    limits: Limits | None,
    clock: Clock,
    cluster: bool | None = None,
    **options: Any,
) -> RedisStore:
    """redis://[user:password@]host:port/db, rediss://..., unix:///path.sock,
    redis+cluster://host:port (or cluster=True).

    kvcache's options, as keywords or in the URL query (the URL wins):
    `timeout` / `socket_timeout` bounds each read (0.25 s), `write_timeout` each
    write and listing (0.4 s, more for big or bulk writes), `connect_timeout` /
    `socket_connect_timeout` each connection attempt (1 s); seconds, or None /
    `none` for no limit. `max_connections` (50) bounds the pool; more concurrent
    callers wait in line, up to `pool_timeout` (5 s). `retries` (0) re-sends a
    command after a connection error or timeout; it is 0 because a re-sent
    put_if_absent or delete_if_equals whose first try did reach Redis would report
    False. Other options go to redis-py (`ssl_ca_certs`, `client_name`, ...).
    See `_redis_client.Settings` and docs/redis.md.
    """
    link, config = await open_link(url, cluster=cluster, options=options)
    try:
        return RedisStore(
            link,
            url=url,
            namespace=namespace,
            limits=limits,
            clock=clock,
            owns_client=True,
            settings=config,
        )
    except BaseException:
        await link.aclose()
        raise
