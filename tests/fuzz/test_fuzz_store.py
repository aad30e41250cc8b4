"""Every public store call with hostile arguments, on every backend.

A call answers KVValidationError or a TypeError of kvcache's own wording, or
succeeds; a refused call leaves the namespace as it was; a value that was
accepted reads back with exactly the bytes it was given.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import hypothesis.strategies as st
import pytest
from hypothesis import given

from fuzz.contract import Harness, fuzz_settings
from fuzz.strategies import (
    BULK_DELETE_KEYS,
    BULK_ENTRIES,
    BULK_KEYS,
    CURSORS,
    KEYS,
    METADATA,
    NUMBERS,
    PREFIXES,
    TYPES,
    VALUES,
    realise,
)
from kvcache import KVStore, KVValidationError

ALLOWED = (KVValidationError, TypeError)
EXAMPLES = 25

Call = Callable[[Any], Awaitable[Any]]  # takes the store (through `_Realising`)


def _read(name: str) -> st.SearchStrategy[Call]:
    def make(key: Any, type: Any, cache_ttl: Any) -> Call:
        return lambda kv: getattr(kv, name)(key, type, cache_ttl=cache_ttl)

    return st.builds(make, KEYS, TYPES, NUMBERS)


def _write(name: str) -> st.SearchStrategy[Call]:
    def make(key: Any, value: Any, expiration: Any, ttl: Any, metadata: Any) -> Call:
        return lambda kv: getattr(kv, name)(
            key, value, expiration=expiration, expiration_ttl=ttl, metadata=metadata
        )

    return st.builds(make, KEYS, VALUES, NUMBERS, NUMBERS | st.none(), METADATA | st.none())


CALLS: dict[str, st.SearchStrategy[Call]] = {
    "get": _read("get"),
    "get_with_metadata": _read("get_with_metadata"),
    "get_many": st.builds(
        lambda keys, type, ttl: lambda kv: kv.get_many(keys, type, cache_ttl=ttl),
        BULK_KEYS,
        TYPES,
        NUMBERS,
    ),
    "get_many_with_metadata": st.builds(
        lambda keys, type, ttl: lambda kv: kv.get_many_with_metadata(keys, type, cache_ttl=ttl),
        BULK_KEYS,
        TYPES,
        NUMBERS,
    ),
    "list": st.builds(
        lambda prefix, limit, cursor: lambda kv: kv.list(prefix=prefix, limit=limit, cursor=cursor),
        PREFIXES,
        NUMBERS,
        CURSORS,
    ),
    "put": _write("put"),
    "put_if_absent": _write("put_if_absent"),
    "delete": st.builds(lambda key: lambda kv: kv.delete(key), KEYS),
    "delete_if_equals": st.builds(
        lambda key, value: lambda kv: kv.delete_if_equals(key, value), KEYS, VALUES
    ),
    "put_many": st.builds(lambda entries: lambda kv: kv.put_many(entries), BULK_ENTRIES),
    "delete_many": st.builds(lambda keys: lambda kv: kv.delete_many(keys), BULK_DELETE_KEYS),
}


@pytest.mark.parametrize("name", sorted(CALLS))
def test_hostile_arguments_get_a_clear_error_and_change_nothing(store_url: str, name: str) -> None:
    with Harness(store_url) as harness:

        @fuzz_settings(EXAMPLES)
        @given(call=CALLS[name])
        def check(call: Call) -> None:
            # Arguments are realised (Lazy built, Offset made absolute) inside the call.
            now = harness.clock.whole
            harness.refuses_cleanly(lambda: call(_Realising(harness.kv, now)), ALLOWED)

        check()


@pytest.mark.parametrize("name", ["put", "put_if_absent"])
def test_an_accepted_value_keeps_its_exact_bytes(store_url: str, name: str) -> None:
    with Harness(store_url) as harness:

        @fuzz_settings(EXAMPLES)
        @given(key=st.sampled_from(["exact", "exact:é"]), value=VALUES)
        def check(key: str, value: Any) -> None:
            made = realise(value)
            kv = harness.kv

            harness.run(kv.delete(key))
            error = harness.refuses_cleanly(lambda: getattr(kv, name)(key, made), ALLOWED)
            if error is None:
                expected = made.encode() if isinstance(made, str) else bytes(made)
                assert harness.run(kv.get(key, "bytes")) == expected

        check()


class _Realising:
    """The store, seen through a proxy that realises every argument of every call."""

    def __init__(self, kv: KVStore, now: int) -> None:
        self._kv = kv
        self._now = now

    def __getattr__(self, name: str) -> Callable[..., Awaitable[Any]]:
        method = getattr(self._kv, name)

        def call(*args: Any, **kwargs: Any) -> Awaitable[Any]:
            real = [realise(arg, self._now) for arg in args]
            pending: Awaitable[Any] = method(
                *real, **{k: realise(v, self._now) for k, v in kwargs.items()}
            )
            return pending

        return call
