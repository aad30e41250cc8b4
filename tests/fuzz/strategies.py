"""Hostile arguments for kvcache's public calls, as hypothesis strategies.

Some arguments cannot be drawn as plain values: a list nested 5,000 deep or an
int of 5,000 digits breaks hypothesis's own reporting (repr), a generator is
used up once it has been read. Those are drawn as `Lazy` (a label and a
builder) and made by `realise` just before the call; `Offset` is an expiration
relative to the store's clock.
"""

from __future__ import annotations

import base64
import itertools
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from typing import Any

import hypothesis.strategies as st

__all__ = [
    "BULK_KEYS",
    "CURSORS",
    "ENTRIES",
    "JUNK",
    "KEYS",
    "Lazy",
    "METADATA",
    "NUMBERS",
    "Offset",
    "PREFIXES",
    "SEEDED",
    "TYPES",
    "VALUES",
    "deep",
    "deep_text",
    "realise",
]

#: Keys every fuzzed namespace starts with, so refused deletes would show.
SEEDED = ["seed:a", "seed:b", "seed:é", "seed:\U0001f600", "zz"]


@dataclass(frozen=True)
class Lazy:
    """An argument made at call time; `label` is what a failing example shows."""

    label: str
    build: Callable[[], Any]

    def __repr__(self) -> str:
        return f"<{self.label}>"


@dataclass(frozen=True)
class Offset:
    """An absolute expiration `seconds` away from the store clock's current second."""

    seconds: int


def realise(value: Any, now: int = 0) -> Any:
    """`value` with every Lazy built and every Offset made absolute (containers too)."""
    if isinstance(value, Lazy):
        return value.build()
    if isinstance(value, Offset):
        return now + value.seconds
    if isinstance(value, dict):
        return {key: realise(item, now) for key, item in value.items()}
    if isinstance(value, list):
        return [realise(item, now) for item in value]
    return value


def _nest(depth: int, kind: str) -> Any:
    value: Any = "\ud800" if kind == "surrogate" else 1
    for _ in range(depth):
        value = {"a": value} if kind == "dict" else [value]
    return value


def deep(depth: int, kind: str = "list") -> Lazy:
    """A JSON document nested `depth` levels deep (lists, dicts, or lists around a surrogate)."""
    return Lazy(f"{kind} nested {depth} deep", lambda: _nest(depth, kind))


def deep_text(depth: int, kind: str = "list") -> Lazy:
    """The JSON text of a document nested `depth` levels deep, made without encoding it."""
    start, end = ('{"a":', "}") if kind == "dict" else ("[", "]")
    return Lazy(
        f"JSON text of {kind}s nested {depth} deep", lambda: start * depth + "1" + end * depth
    )


def _huge(exponent: int, sign: int) -> Lazy:
    return Lazy(f"{'-' if sign < 0 else ''}10**{exponent}", lambda: sign * 10**exponent)


def _released() -> memoryview:
    view = memoryview(b"gone")
    view.release()
    return view


class _Opaque:
    """An object no call should accept as anything."""

    def __repr__(self) -> str:
        return "<opaque>"


#: Values of no type any argument takes (or of a type that only looks right).
JUNK: st.SearchStrategy[Any] = st.sampled_from(
    [
        None,
        True,
        False,
        0,
        -1,
        1.5,
        float("nan"),
        float("inf"),
        b"bytes",
        bytearray(b"ba"),
        [],
        {},
        (),
        frozenset({1}),
        _Opaque(),
        Decimal("60"),
        Fraction(120, 2),
        1j,
        int,
    ]
)

_SURROGATES = st.integers(0xD800, 0xDFFF).map(chr)
_SURROGATE_TEXT = st.lists(
    _SURROGATES | st.sampled_from("a\U0001f600"), min_size=1, max_size=4
).map("".join)
_HUGE_INTS = st.builds(_huge, st.integers(16, 6000), st.sampled_from([1, -1]))

KEYS = st.one_of(
    st.sampled_from(SEEDED),
    st.text(max_size=12),
    st.sampled_from(["", ".", "..", "...", " ", "\x00", "a/b", "%", "k" * 512, "k" * 513]),
    st.sampled_from(["é" * 256, "é" * 257, "\U0001f600" * 128, "\U0001f600" * 129]),
    _SURROGATE_TEXT,
    st.integers(-5, 5),
    st.binary(max_size=4),
    JUNK,
)
PREFIXES = st.one_of(st.none(), st.sampled_from(["seed:", "s", ""]), KEYS)

NUMBERS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(-(2**31) - 2, 2**31 + 2),
    st.integers(-100, 2000),
    _HUGE_INTS,
    st.floats(),
    st.sampled_from(
        ["60", " 61 ", "1e3", "0x40", "0b1", "Infinity", "-Infinity", "NaN", "nan", "inf"]
        + ["1_000", "\u0666\u0660", "", "abc", "1" * 400, "0x" + "f" * 2000, "1e400", "+60"]
        + ["60.9", "-0", "."]
    ),
    st.text(max_size=6),
    st.integers(-5, 10**6).map(Offset),
    JUNK,
)

_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=8,
)
_DEPTHS = st.sampled_from([1, 10, 200, 499, 500, 511, 512, 900, 990, 1000, 3000, 100_000])
_DEEP = st.builds(deep, _DEPTHS, st.sampled_from(["list", "dict", "surrogate"]))

METADATA = st.one_of(
    _JSON,
    _DEEP,
    _HUGE_INTS,
    _SURROGATE_TEXT,
    st.sampled_from(
        [{1: 2}, {None: "n"}, {(1, 2): 3}, {"s": {1, 2}}, b"raw", float("nan"), "m" * 1030]
    ),
    st.sampled_from([1018, 1022, 2000]).map(lambda n: Lazy(f"{n}-char str", lambda: "m" * n)),
    JUNK,
)

VALUES = st.one_of(
    st.text(max_size=10),
    _SURROGATE_TEXT,
    st.binary(max_size=10),
    st.binary(max_size=6).map(bytearray),
    st.binary(max_size=6).map(lambda raw: memoryview(raw)),
    st.just(Lazy("released memoryview", _released)),
    st.just(Lazy("value 1 byte over 25 MiB", lambda: b"v" * (26_214_400 + 1))),
    st.just(Lazy("str 1 byte over 25 MiB", lambda: "é" * 13_107_200 + "v")),
    st.integers(-3, 3),
    JUNK,
)

TYPES = st.one_of(
    st.sampled_from(["text", "json", "bytes", "arrayBuffer", "stream", "", "TEXT", "json "]),
    st.text(max_size=4),
    JUNK,
)

CURSORS = st.one_of(
    st.none(),
    st.just(""),
    st.text(max_size=12),
    st.binary(max_size=12).map(lambda raw: base64.b64encode(raw).decode()),
    st.sampled_from(SEEDED).map(lambda key: base64.b64encode(key.encode()).decode()),
    st.sampled_from(["====", "a", "é", "\ud800", "Zm9v\n", "Zm9v====", "*" * 600]),
    JUNK,
)

_ENTRY = st.fixed_dictionaries(
    {"key": KEYS, "value": VALUES},
    optional={
        "expiration": NUMBERS,
        "expiration_ttl": NUMBERS,
        "metadata": METADATA,
        "base64": st.one_of(st.booleans(), st.sampled_from(["true", "false", 1, 0, None])),
        "unknown": st.integers(),
    },
)
_B64_ENTRY = st.fixed_dictionaries(
    {
        "key": st.sampled_from(SEEDED),
        "value": st.one_of(st.binary(max_size=6).map(lambda b: base64.b64encode(b).decode()), KEYS),
        "base64": st.just(True),
    }
)
ENTRIES = st.one_of(
    _ENTRY, _B64_ENTRY, st.dictionaries(st.text(max_size=3), JUNK, max_size=2), JUNK
)


def _generator(items: list[Any]) -> Lazy:
    return Lazy(f"generator of {items!r}", lambda: (item for item in items))


def _endless(make: Callable[[int], Any], label: str) -> Lazy:
    return Lazy(label, lambda: (make(i) for i in itertools.count()))


def bulk(items: st.SearchStrategy[Any], most: int, endless: Callable[[int], Any]) -> Any:
    """Bulk-call arguments: lists, other collections, generators, too many, and non-lists."""
    return st.one_of(
        st.lists(items, max_size=4),
        st.lists(items, max_size=4).map(tuple),
        st.lists(items, max_size=4).map(_generator),
        st.sampled_from([most, most + 1]).map(
            lambda n: Lazy(f"{n} keys", lambda: [f"bulk:{i}" for i in range(n)])
        ),
        st.just(_endless(endless, "endless generator")),
        st.frozensets(st.text(max_size=3), max_size=3),
        st.text(max_size=4),
        JUNK,
    )


BULK_KEYS = bulk(KEYS, 100, lambda i: f"bulk:{i}")
BULK_DELETE_KEYS = bulk(KEYS, 10_000, lambda i: f"bulk:{i}")
BULK_ENTRIES = bulk(ENTRIES, 10_000, lambda i: {"key": f"bulk:{i}", "value": "v"})
