"""Which namespaces a store holds: a question about the whole store, outside `KVStore`.

A `KVStore` is one namespace, so listing its siblings is not part of the contract
(Workers KV lists namespaces through the account API, not the binding). This
module answers it per backend, read-only, from the store URL:

- sqlite: a separate connection that only reads; a missing file holds no
  namespaces and is not created;
- redis: SCAN for each namespace's index set (every primary of a cluster);
- memory: nothing outlives the process that made it, so a fresh URL holds none.

A namespace counts when it has at least one live (unexpired) key.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Awaitable, Callable
from urllib.parse import quote

from ._redis_format import KeySpace
from ._url import redact_url, sqlite_path
from .base import Clock
from .errors import KVBackendError, KVConfigError
from .registry import BACKENDS

__all__ = ["list_namespaces"]

_NEXT = "SELECT namespace FROM kv WHERE namespace > ? ORDER BY namespace LIMIT 1"
_LIVE = "SELECT 1 FROM kv WHERE namespace = ? AND (expiration IS NULL OR expiration > ?) LIMIT 1"


async def _sqlite(url: str, now: float) -> list[str]:
    path = sqlite_path(url)
    if path == ":memory:" or not os.path.exists(path):
        return []
    try:
        # mode=rw: never creates the file; unlike mode=ro, closing removes the -wal and
        # -shm files a WAL database gets while it is open.
        conn = sqlite3.connect(f"file:{quote(os.path.abspath(path))}?mode=rw", uri=True)
    except sqlite3.Error as exc:
        raise KVBackendError(f"cannot open {path!r}: {exc}", backend="sqlite", cause=exc) from exc
    try:
        tables = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'kv'")
        if tables.fetchone() is None:
            return []
        found: list[str] = []
        after = ""
        # One index probe per namespace, not a scan of every row.
        while (row := conn.execute(_NEXT, (after,)).fetchone()) is not None:
            after = row[0]
            if conn.execute(_LIVE, (after, now)).fetchone() is not None:
                found.append(after)
        return found
    except sqlite3.Error as exc:
        raise KVBackendError(f"{exc} ({path})", backend="sqlite", cause=exc) from exc
    finally:
        conn.close()


async def _redis(url: str, now: float) -> list[str]:
    try:
        from ._redis_client import DRIVER_ERRORS, backend_error, connect
    except ImportError as exc:
        raise KVConfigError(
            f"redis:// needs an optional dependency: pip install 'kvcache[redis]' ({exc})"
        ) from exc
    client = await connect(
        url, cluster=None, timeout=5.0, connect_timeout=2.0, retries=0, options={}
    )
    found: list[str] = []
    try:
        async for name in client.scan_iter(match=b"kv:{*}:idx", count=1000):
            namespace = _namespace_of(name)
            if namespace is None:
                continue  # a value key whose name happens to end in "}:idx"
            total = await client.zcard(name)
            expired = await client.zcount(KeySpace(namespace).expiry, "-inf", now)
            if total > expired:
                found.append(namespace)
    except DRIVER_ERRORS as exc:
        raise backend_error(exc, redact_url(url), "listing namespaces") from exc
    finally:
        await client.aclose()
    return sorted(set(found), key=lambda ns: ns.encode("utf-8", "surrogatepass"))


def _namespace_of(index_key: bytes) -> str | None:
    """The namespace of `kv:{TAG}:idx` (undoing `KeySpace`'s escapes), or None if the
    key is not an index set."""
    text = index_key.decode("utf-8", "surrogatepass")
    if not text.startswith("kv:{"):
        return None
    tag, brace, rest = text.removeprefix("kv:{").partition("}")
    if not brace or rest != ":idx":
        return None
    return tag.replace("%7D", "}").replace("%25", "%")


async def _memory(url: str, now: float) -> list[str]:
    return []


_LISTERS: dict[str, Callable[[str, float], Awaitable[list[str]]]] = {
    "kvcache.kv.sqlite": _sqlite,
    "kvcache.kv.redis": _redis,
    "kvcache.kv.memory": _memory,
}


async def list_namespaces(url: str, *, clock: Clock = time.time) -> list[str]:
    """The namespaces with at least one live key in the store at `url`, in byte order.

    Reads only: a sqlite file that does not exist is reported as holding none and
    is not created.
    """
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    module = BACKENDS.get(scheme, ("", ""))[0]
    lister = _LISTERS.get(module)
    if lister is None:
        known = ", ".join(sorted(BACKENDS))
        raise KVConfigError(
            f"unknown store URL {redact_url(url)!r}: the scheme must be one of {known}"
        )
    return await lister(url, clock())
