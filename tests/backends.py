"""The backends every store test runs against, and the helpers those tests share.

A backend joins the conformance suite, the stateful test and anything else that
takes the `make_store` / `store_url` fixtures by adding one `Backend` to
`BACKENDS`. Its `url` callable receives pytest's `request`, so it can pull in any
other fixture it needs (`request.getfixturevalue("tmp_path")`, a session-scoped
server fixture such as `redis_url`, ...).

`SYNC_BACKENDS` are the same stores opened through `kvcache.sync` and driven from
worker threads (tests/sync_adapter.py); the conformance suite runs over both lists.

`REMOTE_BACKENDS` are stores on a server that keeps Workers KV's own rules: the
`cloudflare://` backend against the Miniflare test Worker (tests/miniflare.py).
Only the conformance suite runs there. Rules such a store cannot keep are skipped
by the store's capabilities (`atomic`, `consistent`, `separate_namespaces`,
`relaxable`; see `require`), never by backend name. Its `clock` moves the
server's clock too, so the expiry tests run there as well.
"""

from __future__ import annotations

import asyncio
import inspect
import math
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, cast

import pytest

import kvcache
import kvcache.sync
from kvcache import KVStore, KVValidationError, Limits
from sync_adapter import AwaitableSyncStore

__all__ = [
    "BACKENDS",
    "GENEROUS_DEADLINES",
    "REMOTE_BACKENDS",
    "SHARED_BACKENDS",
    "SYNC_BACKENDS",
    "Backend",
    "FakeClock",
    "StoreFactory",
    "SyncStoreFactory",
    "fresh_key",
    "fresh_namespace",
    "kv_error",
    "require",
    "require_atomic",
]


@dataclass(frozen=True)
class Backend:
    """One kind of store under test.

    `url(request)` returns a store URL, fresh for each test where the backend keeps
    state outside the process. `shared` says whether two stores opened on that URL
    see the same data (false for memory://, where each store is its own dict).
    `sync` opens the store with `kvcache.sync.open_kv` behind an awaitable adapter.
    `clock(request)` makes the test's clock (a plain FakeClock unless the server's
    time has to move with it).
    """

    id: str
    url: Callable[[pytest.FixtureRequest], str]
    shared: bool = True
    sync: bool = False
    clock: Callable[[pytest.FixtureRequest], FakeClock] = lambda request: FakeClock()


def _memory_url(request: pytest.FixtureRequest) -> str:
    return "memory://"


def _sqlite_url(request: pytest.FixtureRequest) -> str:
    tmp_path = request.getfixturevalue("tmp_path")
    return f"sqlite:///{tmp_path}/kv.sqlite3"


#: The shared suites check semantics, not deadlines: on two cores shared with other
#: test runs, a 25 MB read, a 10,000-entry write or a connection storm can miss the default
#: deadlines (0.25 s / 0.4 s / 1 s). test_redis_faults.py and test_redis_breaker.py test those.
GENEROUS_DEADLINES = "socket_timeout=10&write_timeout=10&socket_connect_timeout=10"


def _redis_url(request: pytest.FixtureRequest) -> str:
    url: str = request.getfixturevalue("redis_url")  # tests/redis_server.py
    return f"{url}?{GENEROUS_DEADLINES}"


def _moves_time(request: pytest.FixtureRequest) -> bool:
    """Whether the test itself takes `clock` (so it may move time or compare expiries)."""
    return "clock" in inspect.signature(request.function).parameters


def _cloudflare_url(request: pytest.FixtureRequest) -> str:
    from miniflare import MiniflareRest, conformance_namespace

    server: MiniflareRest = request.getfixturevalue("miniflare_rest")
    request.getfixturevalue("monkeypatch").setenv("CLOUDFLARE_API_TOKEN", server.write_token)
    timed = _moves_time(request)
    namespace = conformance_namespace(timed=timed)
    server.reset(namespace, timed=timed)
    return server.url(namespace)


def _cloudflare_clock(request: pytest.FixtureRequest) -> FakeClock:
    from miniflare import MiniflareRest, ServerClock, conformance_namespace

    if not _moves_time(request):
        return FakeClock()
    server: MiniflareRest = request.getfixturevalue("miniflare_rest")
    namespace = conformance_namespace(timed=True)
    return ServerClock(lambda now: server.set_time(namespace, now))


#: Every backend the shared suites run against; ids become the pytest ids.
BACKENDS: list[Backend] = [
    Backend("memory", _memory_url, shared=False),
    Backend("sqlite", _sqlite_url),
    Backend("redis", _redis_url),
]

#: Workers KV itself (over REST, served by workerd in Miniflare): the conformance suite only.
REMOTE_BACKENDS: list[Backend] = [
    Backend("cloudflare", _cloudflare_url, clock=_cloudflare_clock),
]

#: The backends whose stores on one URL share data across processes (multi-process tests).
SHARED_BACKENDS: list[Backend] = [backend for backend in BACKENDS if backend.shared]

#: The same backends through the sync facade.
SYNC_BACKENDS: list[Backend] = [
    Backend(f"sync-{backend.id}", backend.url, shared=backend.shared, sync=True)
    for backend in BACKENDS
]


class FakeClock:
    """A clock that moves only when told to; pass it as `clock=`.

    It starts at the real time plus half a second, so expiries are in the real
    future (for servers that check them) and whole-second rounding is exercised.
    """

    def __init__(self, start: float | None = None) -> None:
        self.now = math.floor(time.time()) + 0.5 if start is None else start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds

    @property
    def whole(self) -> int:
        """The current second, as Workers KV counts it for expiries."""
        return math.floor(self.now)


def fresh_key(prefix: str = "k") -> str:
    return f"{prefix}-{uuid.uuid4().hex}"


def fresh_namespace() -> str:
    return f"test-{uuid.uuid4().hex[:12]}"


class StoreFactory:
    """Opens stores on one backend URL and closes every one of them at teardown."""

    def __init__(self, backend: Backend, url: str, clock: FakeClock) -> None:
        self.backend = backend
        self.url = url
        self.clock = clock
        self._stores: list[KVStore] = []

    @property
    def shared(self) -> bool:
        return self.backend.shared

    async def __call__(
        self,
        *,
        namespace: str | None = None,
        limits: Limits | None = None,
        clock: Any = None,
    ) -> KVStore:
        options: dict[str, Any] = {
            "namespace": namespace if namespace is not None else fresh_namespace(),
            "limits": limits,
            "clock": clock if clock is not None else self.clock,
        }
        if self.backend.sync:
            opened = await asyncio.to_thread(kvcache.sync.open_kv, self.url, **options)
            store = cast(KVStore, AwaitableSyncStore(opened))
        else:
            store = await kvcache.open_kv(self.url, **options)
        self._stores.append(store)
        return store

    async def aclose(self) -> None:
        while self._stores:
            await self._stores.pop().close()


class SyncStoreFactory:
    """Opens `kvcache.sync` stores on one URL and closes every one of them at teardown."""

    def __init__(self, url: str, clock: FakeClock) -> None:
        self.url = url
        self.clock = clock
        self._stores: list[kvcache.sync.KVStore] = []

    def __call__(
        self, *, namespace: str | None = None, limits: Limits | None = None
    ) -> kvcache.sync.KVStore:
        store = kvcache.sync.open_kv(
            self.url,
            namespace=namespace if namespace is not None else fresh_namespace(),
            limits=limits,
            clock=self.clock,
        )
        self._stores.append(store)
        return store

    def close(self) -> None:
        while self._stores:
            self._stores.pop().close()


def require_atomic(kv: KVStore) -> None:
    """Skip the calling test on stores without atomic put_if_absent/delete_if_equals."""
    require(kv, "atomic")


_WHY = {
    "atomic": "has no atomic put_if_absent/delete_if_equals",
    "consistent": "is eventually consistent (another client may read an old value)",
    "separate_namespaces": "takes its namespace from the URL, not from namespace=",
    "relaxable": "keeps Workers KV's limits on its server (Limits.relaxed() cannot apply)",
}


def require(kv: KVStore, capability: str) -> None:
    """Skip the calling test on stores whose class lacks `capability`."""
    if not getattr(kv, capability):
        pytest.skip(f"{type(kv).__name__} {_WHY[capability]}")


@contextmanager
def kv_error(message: str, status: int) -> Iterator[pytest.ExceptionInfo[KVValidationError]]:
    """Expect a KVValidationError with exactly this text and status."""
    with pytest.raises(KVValidationError) as info:
        yield info
    assert str(info.value) == message
    assert info.value.status == status
