"""The cache, its decorator and its serializer with hostile arguments and hostile entries.

Cache calls answer KVValidationError, TypeError or ValueError of kvcache's own
wording, and a refused call writes nothing. Whatever string or bytes sit under
a cache key, `get` never raises, and an entry it cannot use is a counted miss
that the next fill overwrites.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from typing import Any

import hypothesis.strategies as st
import pytest
from hypothesis import given

from fuzz.contract import Harness, check_error, fuzz_settings, short_ttls_allowed
from fuzz.strategies import JUNK, KEYS, METADATA, NUMBERS, PREFIXES, Lazy, deep_text, realise
from kvcache import Cache, KVValidationError, Limits
from kvcache.serializers import JSON, JsonSerializer

ALLOWED = (KVValidationError, TypeError, ValueError)
EXAMPLES = 25
_MISSING = object()

#: What a fetch returns: anything (JSON or not, deep, NaN, huge ints).
RESULTS = st.one_of(METADATA, st.sampled_from([math.nan, {1, 2}, b"raw", object()]))
#: TTL-like arguments; DEFAULT (left out) is drawn as the sentinel `...`.
TTLS = st.one_of(st.just(...), NUMBERS)
CacheCall = Callable[[Cache], Awaitable[Any]]


def _ttl_kwargs(**given: Any) -> dict[str, Any]:
    return {name: value for name, value in given.items() if value is not ...}


def _fetch(result: Any) -> Callable[[], Awaitable[Any]]:
    async def fetch() -> Any:
        return realise(result)

    return fetch


CALLS: dict[str, st.SearchStrategy[CacheCall]] = {
    "get": st.builds(lambda key: lambda c: c.get(realise(key), _MISSING), KEYS),
    "set": st.builds(
        lambda key, value, ttl: (
            lambda c: c.set(realise(key), realise(value), **_ttl_kwargs(ttl=realise(ttl)))
        ),
        KEYS,
        RESULTS,
        TTLS,
    ),
    "get_or_set": st.builds(
        lambda key, result, ttl, negative, stale, lock: (
            lambda c: c.get_or_set(
                realise(key),
                _fetch(result),
                **_ttl_kwargs(ttl=realise(ttl), negative_ttl=realise(negative)),
                stale_ttl=realise(stale),
                lock=lock,
            )
        ),
        KEYS,
        RESULTS,
        TTLS,
        TTLS,
        st.none() | NUMBERS,
        st.booleans(),
    ),
    "get_or_set with a bad fetch": st.builds(
        lambda key, fetch: lambda c: c.get_or_set(realise(key), fetch), KEYS, JUNK
    ),
    "delete": st.builds(lambda key: lambda c: c.delete(realise(key)), KEYS),
    "delete_prefix": st.builds(lambda prefix: lambda c: c.delete_prefix(realise(prefix)), PREFIXES),
}


@pytest.mark.parametrize("name", sorted(CALLS))
def test_cache_calls_get_a_clear_error_and_change_nothing(store_url: str, name: str) -> None:
    with Harness(store_url) as harness:
        cache = Cache(harness.kv, prefix="seed:")

        @fuzz_settings(EXAMPLES)
        @given(call=CALLS[name])
        def check(call: CacheCall) -> None:
            harness.refuses_cleanly(lambda: call(cache), ALLOWED)

        check()


_OPTIONS = st.fixed_dictionaries(
    {},
    optional={
        "default_ttl": NUMBERS,
        "prefix": KEYS,
        "serializer": JUNK,
        "local_ttl": NUMBERS,
        "local_maxsize": NUMBERS,
        "jitter": NUMBERS,
        "lock_timeout": NUMBERS,
        "breaker": JUNK,
    },
)


@fuzz_settings(100)
@given(options=_OPTIONS)
def test_cache_options_get_a_clear_error(options: dict[str, Any]) -> None:
    with Harness("memory://") as harness, short_ttls_allowed():
        try:
            Cache(harness.kv, **realise(options))
        except Exception as exc:
            check_error(exc, (KVValidationError, TypeError))


#: What another program (or a broken writer) may have left under a cache key.
RAW_ENTRIES = st.one_of(
    st.text(max_size=12),
    st.binary(max_size=12),
    st.sampled_from(["|", "||", "|null", "x|1", "-5|1", "99999999999|1", "1" * 5000 + "|1"]),
    st.sampled_from(["|[1,", '|{"a":NaN}', "|1e400", "|" + "1" * 5000, "|\ufeff1", "|Infinity"]),
    st.builds(
        deep_text, st.sampled_from([50, 500, 3000, 100_000]), st.sampled_from(["list", "dict"])
    ).map(lambda text: Lazy(f"| + {text.label}", lambda: "|" + text.build())),
    st.binary(max_size=6).map(lambda raw: b"|" + raw),
)


def _raw(entry: Any) -> Any:
    return entry.build() if isinstance(entry, Lazy) else entry


@fuzz_settings(EXAMPLES)
@given(entry=RAW_ENTRIES, local=st.booleans())
def test_any_stored_entry_reads_or_misses_and_the_next_fill_overwrites(
    store_url: str, entry: Any, local: bool
) -> None:
    with Harness(store_url, limits=Limits.relaxed()) as harness:
        cache = Cache(harness.kv, local_ttl=60 if local else None)
        harness.run(harness.kv.put("entry", _raw(entry)))

        found = harness.run(cache.get("entry", _MISSING))
        errors = cache.stats().errors
        filled = harness.run(cache.get_or_set("entry", _fetch({"fresh": True})))
        if found is _MISSING:
            assert filled == {"fresh": True}, "an unusable entry must be refetched"
            assert harness.run(cache.get("entry", _MISSING)) == {"fresh": True}
        else:
            assert filled is found or filled == found or repr(filled) == repr(found)  # NaN
            assert errors == 0
        assert cache.stats().misses >= (1 if found is _MISSING else 0)


@fuzz_settings(100)
@given(template=st.text(alphabet="{}:ab.[]0!rsx ", max_size=10), args=st.lists(JUNK, max_size=2))
def test_decorator_templates_and_arguments_get_a_clear_error(
    template: str, args: list[Any]
) -> None:
    with Harness("memory://") as harness:
        cache = Cache(harness.kv)

        async def find(a: Any = None, b: Any = None) -> str:
            return "found"

        async def decorate_and_call() -> Any:
            return await cache.cached(template)(find)(*args)

        try:
            harness.run(decorate_and_call())
        except Exception as exc:
            check_error(exc, ALLOWED)


@fuzz_settings(100)
@given(value=RESULTS, default=st.none() | JUNK)
def test_serializer_dumps_refuses_with_type_error(value: Any, default: Any) -> None:
    try:
        serializer = JsonSerializer(default=default)
        text = serializer.dumps(realise(value))
    except Exception as exc:
        check_error(exc, (TypeError,))
    else:
        serializer.loads(text)
        text.encode("utf-8")  # always valid UTF-8: lone surrogates are escaped


@fuzz_settings(100)
@given(data=st.one_of(st.text(max_size=20), st.binary(max_size=20), RAW_ENTRIES, JUNK))
def test_serializer_loads_refuses_with_value_error(data: Any) -> None:
    made = _raw(data) if isinstance(data, Lazy) else data
    try:
        JSON.loads(made)
    except ValueError as exc:  # json.JSONDecodeError and UnicodeDecodeError are ValueErrors
        assert not isinstance(exc, RecursionError)
    except TypeError as exc:
        assert not isinstance(made, str | bytes | bytearray), exc
