"""The error contract the fuzz tests check (docs/errors.md), and a harness to check it.

`Harness` owns an event loop and a store in a fresh namespace seeded with a
few keys; `refuses_cleanly` runs one call and, when the call raises, checks the
error's exact type against the allowed ones, that its message is kvcache's own
(not one of Python's generic texts), and that the namespace (every key's value,
expiration and metadata) is exactly what it was before.
"""

from __future__ import annotations

import asyncio
import os
import re
import traceback
import warnings
from collections.abc import Awaitable, Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from hypothesis import HealthCheck, settings

import kvcache
from backends import FakeClock, fresh_namespace
from fuzz.strategies import SEEDED
from kvcache import CacheTTLWarning, KVStore, Limits

__all__ = [
    "Harness",
    "Snapshot",
    "check_error",
    "fuzz_settings",
    "short_ttls_allowed",
    "snapshot",
]

T = TypeVar("T")
#: key -> (value bytes, expiration, metadata)
Snapshot = dict[str, tuple[bytes, int | None, Any]]

#: The start of Python's own error texts: a message that opens like this names nothing.
#: (kvcache may quote one after saying which argument it is about.)
GENERIC = re.compile(
    r"(?:'[^']*' |object of type '[^']*' )?(?:"
    + "|".join(
        [
            r"object is not iterable",
            r"has no len\(\)",
            r"unhashable type",
            r"object is not subscriptable",
            r"object is not callable",
            r"object can't be used in 'await' expression",
            r"unsupported operand",
            r"not supported between instances",
            r"must be real number",
            r"object cannot be interpreted as an integer",
            r"an integer is required",
            r"int too large",
            r"maximum recursion depth",
            r"Invalid IPv6 URL",
            r"Port could not be cast",
            r"Port out of range",
            r"embedded null",
            r"codec can't",
            r"object has no attribute",
            r"Expecting value",
            r"Exceeds the limit",
            r"operation forbidden on released memoryview",
        ]
    )
    + ")"
)


#: KVCACHE_FUZZ_SCALE=N runs N times the examples, freshly random each run (a local hunt);
#: unset, every run (and CI) tries the same few.
SCALE = int(os.environ.get("KVCACHE_FUZZ_SCALE", "1"))


def fuzz_settings(examples: int) -> settings:
    """Deterministic and quick: the same examples on every run, no example database."""
    return settings(
        max_examples=examples * SCALE,
        deadline=None,
        derandomize=SCALE == 1,
        database=None,
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.filter_too_much,
            HealthCheck.function_scoped_fixture,  # fixtures give a URL; examples open stores
        ],
    )


@contextmanager
def short_ttls_allowed() -> Iterator[None]:
    """A TTL raised to the store's minimum warns (CacheTTLWarning); that is no error here."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CacheTTLWarning)
        yield


def check_error(exc: BaseException, allowed: Iterable[type[BaseException]]) -> None:
    """Fail unless `exc` is exactly one of `allowed`, with a message of kvcache's own."""
    kinds = tuple(allowed)
    where = "".join(traceback.format_exception(exc))
    assert type(exc) in kinds, f"{type(exc).__name__} is not one of {kinds}:\n{where}"
    text = str(exc)
    assert text, f"{type(exc).__name__} without a message:\n{where}"
    assert not GENERIC.match(text), f"a generic message names nothing: {text!r}\n{where}"


async def snapshot(kv: KVStore) -> Snapshot:
    """Every live key of the namespace with its value bytes, expiration and metadata."""
    rows: Snapshot = {}
    cursor: str | None = None
    while True:
        page = await kv.list(cursor=cursor)
        for info in page.keys:
            entry = await kv.get_with_metadata(info.name, "bytes")
            assert entry.value is not None, f"{info.name!r} is listed but not readable"
            rows[info.name] = (entry.value, info.expiration, entry.metadata)
        if page.list_complete:
            return rows
        cursor = page.cursor


class Harness:
    """A store on `url` in a fresh namespace, seeded, and a loop to drive it."""

    #: Reseed when this many keys piled up from accepted writes (keeps snapshots cheap).
    MAX_KEYS = 40

    def __init__(self, url: str, *, limits: Limits | None = None) -> None:
        self.loop = asyncio.new_event_loop()
        self.clock = FakeClock()
        self.kv: KVStore = self.run(
            kvcache.open_kv(url, namespace=fresh_namespace(), limits=limits, clock=self.clock)
        )
        self.seeded: Snapshot = {}
        self.reseed()

    def run(self, coro: Awaitable[T]) -> T:
        with short_ttls_allowed():
            return self.loop.run_until_complete(coro)

    def reseed(self) -> None:
        async def seed() -> Snapshot:
            current = await snapshot(self.kv)
            if current:
                await self.kv.delete_many(list(current))
            for index, key in enumerate(SEEDED):
                meta = {"i": index, "s": "\ud800"} if index % 2 else None
                ttl = 3600 if index % 3 == 0 else None
                await self.kv.put(key, f"value {index}", expiration_ttl=ttl, metadata=meta)
            return await snapshot(self.kv)

        self.seeded = self.run(seed())

    def refuses_cleanly(
        self, call: Callable[[], Awaitable[Any]], allowed: Iterable[type[BaseException]]
    ) -> BaseException | None:
        """Run `call`; if it raises, check the error and that nothing changed. Returns it."""

        async def attempt() -> tuple[Snapshot, BaseException | None, Snapshot]:
            before = await snapshot(self.kv)
            try:
                await call()
            except Exception as exc:
                return before, exc, await snapshot(self.kv)
            return before, None, {}

        before, error, after = self.run(attempt())
        if error is None:
            if len(before) > self.MAX_KEYS:
                self.reseed()
            return None
        check_error(error, allowed)
        assert after == before, f"refused call ({error!r}) changed the store"
        return error

    def close(self) -> None:
        try:
            self.run(self.kv.close())
        finally:
            self.loop.close()

    def __enter__(self) -> Harness:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
