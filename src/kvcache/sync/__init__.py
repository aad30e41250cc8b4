"""kvcache for sync code (Django, Flask, scripts, Celery tasks): the same API without `await`.

    import kvcache.sync

    with kvcache.sync.open_kv("sqlite:///data/kv.sqlite3", namespace="CACHE") as kv:
        cache = kvcache.sync.Cache(kv, default_ttl=3600)
        customer = cache.get_or_set("customer:email:a@b.c", lambda: find("a@b.c"))

Not a second implementation: each sync store runs the async core on one private
event-loop thread that it owns and closes, and every call (from any number of
threads) runs the core's own coroutine there. Plain callables (fetches, decorated
functions, handlers) run on the calling thread, so they never block the loop.
Calling from a thread that runs an event loop raises `RunningLoopError`; using a
store in a process forked after it was opened raises `ForkedStoreError`. See
docs/sync.md.
"""

from __future__ import annotations

from ._cache import Cache, CachedFunction
from ._idempotency import Claim, Idempotency
from ._portal import ForkedStoreError, RunningLoopError
from ._store import KVStore, open_kv

__all__ = [
    "Cache",
    "CachedFunction",
    "Claim",
    "ForkedStoreError",
    "Idempotency",
    "KVStore",
    "RunningLoopError",
    "open_kv",
]

for _name in __all__:
    globals()[_name].__module__ = __name__
del _name
