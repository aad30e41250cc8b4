"""Random sequences of store calls against a dict with expiries, on every backend.

hypothesis drives a `RuleBasedStateMachine`; each machine owns an event loop and
a store in a fresh namespace on the backend's URL, and moves a fake clock.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable
from typing import Any, ClassVar, TypeVar

import hypothesis.strategies as st
from hypothesis import HealthCheck, settings
from hypothesis.stateful import (
    RuleBasedStateMachine,
    precondition,
    rule,
    run_state_machine_as_test,
)

import kvcache
from backends import FakeClock, fresh_namespace
from kvcache import KeyInfo, KVEntry

T = TypeVar("T")
Row = tuple[bytes, int | None, Any]  # value, expiration, metadata

# Few keys, so that calls often meet the same key; prefixes that are SQL wildcards.
KEYS = st.sampled_from(["a", "ab", "a%", "a_b", "a\\", "a\x00", "é", "é\U0001f600", "\ue000"])
PREFIXES = st.none() | st.sampled_from(["", "a", "a%", "a_", "é", "\ue000", "z"])
VALUES = st.binary(max_size=6) | st.text(alphabet="xyé\U0001f600", max_size=4)
METADATA = (
    st.none() | st.integers(-5, 5) | st.text(max_size=3) | st.lists(st.booleans(), max_size=2)
)
TTLS = st.none() | st.integers(60, 300)


def as_bytes(value: str | bytes) -> bytes:
    return value.encode() if isinstance(value, str) else value


class KVMachine(RuleBasedStateMachine):
    """The store must agree with `model` after every step."""

    url: ClassVar[str]

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.clock = FakeClock()
        self.kv = self.run(kvcache.open_kv(self.url, namespace=fresh_namespace(), clock=self.clock))
        self.model: dict[str, Row] = {}

    def run(self, coro: Awaitable[T]) -> T:
        return self.loop.run_until_complete(coro)

    def teardown(self) -> None:
        try:
            self.run(self.kv.close())
        finally:
            self.loop.close()

    def live(self) -> dict[str, Row]:
        now = self.clock()
        return {k: row for k, row in self.model.items() if row[1] is None or row[1] > now}

    def expiry(self, ttl: int | None) -> int | None:
        return None if ttl is None else math.floor(self.clock()) + ttl

    @rule(key=KEYS, value=VALUES, ttl=TTLS, metadata=METADATA, absolute=st.booleans())
    def put(
        self, key: str, value: str | bytes, ttl: int | None, metadata: Any, absolute: bool
    ) -> None:
        if absolute and ttl is not None:
            self.run(self.kv.put(key, value, expiration=self.expiry(ttl), metadata=metadata))
        else:
            self.run(self.kv.put(key, value, expiration_ttl=ttl, metadata=metadata))
        self.model[key] = (as_bytes(value), self.expiry(ttl), metadata)

    @rule(entries=st.lists(st.tuples(KEYS, VALUES, TTLS, METADATA), max_size=4))
    def put_many(self, entries: list[tuple[str, str | bytes, int | None, Any]]) -> None:
        bulk = []
        for key, value, ttl, metadata in entries:
            text = value if isinstance(value, str) else value.hex()
            entry: dict[str, Any] = {"key": key, "value": text, "metadata": metadata}
            if ttl is not None:
                entry["expiration_ttl"] = ttl
            bulk.append(entry)
            self.model[key] = (text.encode(), self.expiry(ttl), metadata)
        self.run(self.kv.put_many(bulk))

    @rule(key=KEYS)
    def delete(self, key: str) -> None:
        self.run(self.kv.delete(key))
        self.model.pop(key, None)

    @rule(keys=st.lists(KEYS, max_size=4))
    def delete_many(self, keys: list[str]) -> None:
        self.run(self.kv.delete_many(keys))
        for key in keys:
            self.model.pop(key, None)

    @rule(key=KEYS)
    def get(self, key: str) -> None:
        row = self.live().get(key)
        expected = None if row is None else row[0]
        assert self.run(self.kv.get(key, "bytes")) == expected
        entry = self.run(self.kv.get_with_metadata(key, "bytes"))
        assert entry == (KVEntry(None, None) if row is None else KVEntry(row[0], row[2]))

    @rule(keys=st.lists(KEYS, min_size=1, max_size=5))
    def get_many(self, keys: list[str]) -> None:
        live = self.live()
        got = self.run(self.kv.get_many_with_metadata(keys))
        assert list(got) == list(dict.fromkeys(keys))
        for key, entry in got.items():
            row = live.get(key)
            if row is None:
                assert entry is None
            else:
                assert entry == KVEntry(row[0].decode("utf-8", "replace"), row[2])

    @rule(prefix=PREFIXES, limit=st.integers(1, 4))
    def list_pages(self, prefix: str | None, limit: int) -> None:
        expected = [
            KeyInfo(name, exp, meta)
            for name, (_, exp, meta) in sorted(self.live().items(), key=lambda i: i[0].encode())
            if name.startswith(prefix or "")
        ]
        listed: list[KeyInfo] = []
        cursor = None
        while True:
            page = self.run(self.kv.list(prefix=prefix, limit=limit, cursor=cursor))
            assert (page.cursor is None) == page.list_complete
            if not page.list_complete:
                assert len(page.keys) == limit
            listed.extend(page.keys)
            if page.list_complete:
                break
            cursor = page.cursor
        assert listed == expected

    @precondition(lambda self: self.kv.atomic)
    @rule(key=KEYS, value=VALUES, ttl=TTLS, metadata=METADATA)
    def put_if_absent(self, key: str, value: str | bytes, ttl: int | None, metadata: Any) -> None:
        absent = key not in self.live()
        wrote = self.run(self.kv.put_if_absent(key, value, expiration_ttl=ttl, metadata=metadata))
        assert wrote is absent
        if absent:
            self.model[key] = (as_bytes(value), self.expiry(ttl), metadata)

    @precondition(lambda self: self.kv.atomic)
    @rule(key=KEYS, value=VALUES, use_stored=st.booleans())
    def delete_if_equals(self, key: str, value: str | bytes, use_stored: bool) -> None:
        row = self.live().get(key)
        if use_stored and row is not None:
            value = row[0]
        matches = row is not None and row[0] == as_bytes(value)
        assert self.run(self.kv.delete_if_equals(key, value)) is matches
        if matches:
            del self.model[key]

    @rule(seconds=st.sampled_from([0.5, 1, 30, 59.5, 60, 61, 120, 299.5]))
    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)

    @rule(data=st.data(), before=st.booleans())
    def advance_to_an_expiry(self, data: st.DataObject, before: bool) -> None:
        """Stop exactly at (or just before) a key's expiry: the boundary a store can miss."""
        now = self.clock()
        expiries = sorted({row[1] for row in self.model.values() if row[1] is not None})
        ahead = [at for at in expiries if at - 0.25 > now]
        if ahead:
            at = data.draw(st.sampled_from(ahead))
            self.clock.now = at - 0.25 if before else at


def test_store_matches_model(store_url: str) -> None:
    machine = type("Machine", (KVMachine,), {"url": store_url})
    run_state_machine_as_test(
        machine,
        settings=settings(
            max_examples=60,
            stateful_step_count=30,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
