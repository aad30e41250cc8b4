"""From a store URL to an open store, importing only the backend that is asked for."""

from __future__ import annotations

import importlib
import time
from collections.abc import Generator
from types import TracebackType
from typing import Any

from ._url import default_url, parse_url, redact_url
from .base import Clock, KVStore
from .errors import KVConfigError
from .limits import Limits
from .meter import Meter, check_meter

__all__ = ["BACKENDS", "OpenKV", "open_kv", "redact_url"]

#: URL scheme -> (module, factory function). Modules are imported on first use.
BACKENDS: dict[str, tuple[str, str]] = {
    "memory": ("kvcache.kv.memory", "from_url"),
    "sqlite": ("kvcache.kv.sqlite", "from_url"),
    "redis": ("kvcache.kv.redis", "from_url"),
    "rediss": ("kvcache.kv.redis", "from_url"),
    "redis+cluster": ("kvcache.kv.redis", "from_url"),
    "rediss+cluster": ("kvcache.kv.redis", "from_url"),
    "unix": ("kvcache.kv.redis", "from_url"),
    "cloudflare": ("kvcache.kv.cloudflare", "from_url"),
}

_EXTRAS = {"kvcache.kv.redis": "redis", "kvcache.kv.cloudflare": "cloudflare"}


async def _open(
    url: str | None,
    namespace: str,
    limits: Limits | None,
    clock: Clock,
    meter: Meter | None,
    options: dict[str, Any],
) -> KVStore:
    check_meter(meter)  # before a store is opened, so a bad meter leaves none open
    if url is None:
        url = default_url()
    if not isinstance(url, str):
        raise TypeError(f"store URL must be str, not {type(url).__name__}")
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    parse_url(url)
    if scheme not in BACKENDS:
        known = ", ".join(sorted(BACKENDS))
        raise KVConfigError(
            f"unknown store URL {redact_url(url)!r}: the scheme must be one of {known}"
        )
    module_name, factory_name = BACKENDS[scheme]
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        extra = _EXTRAS.get(module_name, "")
        raise KVConfigError(
            f"{scheme}:// needs an optional dependency: pip install 'kvcache[{extra}]' ({exc})"
        ) from exc
    factory = getattr(module, factory_name)
    store: KVStore = await factory(url, namespace=namespace, limits=limits, clock=clock, **options)
    store.meter = meter
    return store


class OpenKV:
    """What `open_kv` returns: await it for a store, or use it as `async with`."""

    def __init__(
        self,
        url: str | None,
        namespace: str,
        limits: Limits | None,
        clock: Clock,
        meter: Meter | None,
        options: dict[str, Any],
    ) -> None:
        self._args = (url, namespace, limits, clock, meter, options)
        self._store: KVStore | None = None

    def __await__(self) -> Generator[Any, None, KVStore]:
        return _open(*self._args).__await__()

    async def __aenter__(self) -> KVStore:
        self._store = await _open(*self._args)
        return self._store

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._store is not None:
            await self._store.close()
            self._store = None


def open_kv(
    url: str | None = None,
    *,
    namespace: str = "default",
    limits: Limits | None = None,
    clock: Clock = time.time,
    meter: Meter | None = None,
    **options: Any,
) -> OpenKV:
    """Open a store by URL; no URL (and no KVCACHE_STORE) means ./.kvcache/kv.sqlite3.

    URLs: memory://, sqlite:///relative.db, sqlite:////absolute.db, redis://host:port/db,
    rediss://..., redis+cluster://host:port, cloudflare://ACCOUNT_ID/NAMESPACE_ID (Workers
    KV over its REST API; the URL names the namespace, so `namespace` is not used).
    `meter` counts the store's billable operations (`kvcache.Meter`, docs/cost.md).
    Extra keyword options go to the backend.
    """
    return OpenKV(url, namespace, limits, clock, meter, options)
