"""Billable operations, counted the way Cloudflare bills Workers KV.

A `Meter` is handed to stores (`open_kv(url, meter=meter)`); `KVStore`'s public
methods count into it, so every backend counts alike. The rules (Cloudflare's,
spec/pricing.md):

- every key is one operation: `get_many` of 100 keys is 100 reads, `put_many` of
  N entries N writes, `delete_many` of N keys N deletes;
- a read that finds nothing is still a read; one `list()` call is one list
  request, attributed to the family of its prefix (the keys it returned are
  counted apart, as `list_key`: what the same listing would read on D1);
- `put_if_absent` is a read plus a write when it wrote, `delete_if_equals` a read
  plus a delete when it deleted: what the same thing costs on Workers KV, which
  has no conditional write (read, compare, then write);
- a call is counted once the store answered it; a call refused by validation or
  failed by the store is not (Workers KV does not bill a refused request);
- a write to a key this meter saw written less than 1 s before also counts as
  `rapid_write` (Workers KV rejects more than one write per second per key). Each
  process sees only its own writes, so over several workers it is a lower bound.

Counts sit per namespace, per minute, per key family (`family`, a function the
caller passes; the kv layer knows nothing of key schemes). A key's family is
remembered in a bounded memo. A read or a single put, the hot paths, is a list
append (a put's with its time): they are counted in batches of up to READ_BATCH
that end at any other operation and at each drain, and a batch counts in the
minute it began (so at a minute's turn a few may land in the minute before; the
service drains every fraction of a second). `drain()` hands the counts out by (minute,
namespace, op, family) for the caller to store (the service writes them into
the app database's history).

Stored bytes are a gauge, not a count: `stored(namespace, nbytes)` records a
sample the caller took with `KVStore.stored_bytes()`.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass

__all__ = ["OPS", "Bucket", "Meter", "Reading", "Stored", "Tally", "check_meter", "first_segment"]

#: The counted operations: the four Workers KV bills, writes it would reject, and the
#: keys listings returned (what a listing would read on D1).
OPS = ("read", "write", "delete", "list", "rapid_write", "list_key")
#: Keys whose family the meter remembers (about 100 bytes each); the memo is cleared when full.
MEMO_KEYS = 100_000
#: Reads are counted in batches of up to READ_BATCH, stamped with the clock at their
#: first read: a clock reading costs as much as the rest of counting one read.
READ_BATCH = 1024
#: Distinct keys written in the last second before their times are pruned.
PRUNE_AT = 10_000
#: Workers KV allows one write per second to the same key.
WRITE_INTERVAL = 1.0

Family = Callable[[str], str]
_Counts = dict[str, int]


def first_segment(key: str) -> str:
    """The default family: the key up to its first ':' (low cardinality, no ids)."""
    return key.partition(":")[0]


@dataclass(frozen=True, slots=True)
class Bucket:
    """Operations of one kind on one key family of one namespace in one minute."""

    minute: int
    namespace: str
    op: str
    family: str
    count: int


@dataclass(frozen=True, slots=True)
class Stored:
    """A sample of the bytes (keys, values, metadata) a namespace holds."""

    minute: int
    namespace: str
    nbytes: int


@dataclass(frozen=True, slots=True)
class Reading:
    """What `Meter.drain()` hands out."""

    counts: list[Bucket]
    stored: list[Stored]


class Tally:
    """One namespace's counts for the current minute; what a store holds and calls."""

    __slots__ = (
        "_clock",
        "_done",
        "_family_of",
        "_families",
        "_last_write",
        "_minute",
        "_next",
        "_ops",
        "_pending",
        "_prune_at",
        "_reads",
        "_written",
        "_written_at",
        "namespace",
    )

    def __init__(self, namespace: str, meter: Meter) -> None:
        self.namespace = namespace
        self._clock = meter.clock
        self._families = meter._families  # key -> family, shared by the meter's tallies
        self._family_of = meter._family_of
        self._ops: dict[str, _Counts] = {op: {} for op in OPS}
        self._reads = self._ops["read"]  # the hottest counter, one attribute away
        self._done: list[tuple[int, dict[str, _Counts]]] = []
        self._last_write: dict[str, float] = {}
        self._prune_at = PRUNE_AT
        self._pending: list[str] = []  # keys read since the batch's clock reading
        self._written: list[str] = []  # keys `write` saw since the last settle, and when
        self._written_at: list[float] = []
        self._minute = 0
        self._next = -1.0

    def _fresh(self) -> dict[str, _Counts]:
        ops, self._ops = self._ops, {op: {} for op in OPS}
        self._reads = self._ops["read"]
        return ops

    def _tick(self) -> float:
        """The clock; starts a new minute when it has passed the current one.

        Pending reads and writes are counted first, in the minute of their batch.
        """
        if self._pending or self._written:
            self._settle()
        now = self._clock()
        if now < self._next:
            return now
        if any(self._ops.values()):
            self._done.append((self._minute, self._fresh()))
        self._minute = int(now // 60) * 60
        self._next = self._minute + 60.0
        self._prune(now)
        return now

    def _prune(self, now: float) -> None:
        """Forget writes older than the 1 s window (kept bounded for any traffic)."""
        horizon = now - WRITE_INTERVAL
        self._last_write = {k: t for k, t in self._last_write.items() if t > horizon}
        self._prune_at = max(PRUNE_AT, 2 * len(self._last_write))

    def _settle(self) -> None:
        """Count the pending reads and single writes, in the minute of their batch."""
        if self._pending:
            pending, self._pending = self._pending, []
            families, family_of, reads = self._families, self._family_of, self._reads
            for key, n in Counter(pending).items():
                family = families.get(key) or family_of(key)
                reads[family] = reads.get(family, 0) + n
        if self._written:
            keys, self._written = self._written, []
            times, self._written_at = self._written_at, []
            self._note_writes(keys, times)

    def _note_writes(self, keys: Iterable[str], times: Iterable[float]) -> None:
        """Count writes, and those less than WRITE_INTERVAL after the key's previous one."""
        families, family_of, last_write = self._families, self._family_of, self._last_write
        writes, rapid = self._ops["write"], self._ops["rapid_write"]
        now = 0.0
        for key, now in zip(keys, times, strict=True):
            family = families.get(key) or family_of(key)
            writes[family] = writes.get(family, 0) + 1
            last = last_write.get(key)
            last_write[key] = now
            if last is not None and now - last < WRITE_INTERVAL:
                rapid[family] = rapid.get(family, 0) + 1
        if len(last_write) > self._prune_at:
            self._prune(now)

    def _count(self, op: str, key: str, n: int = 1) -> None:
        family = self._families.get(key) or self._family_of(key)
        counts = self._ops[op]
        counts[family] = counts.get(family, 0) + n

    # -- what the store calls (after the backend answered) --------------------

    def read(self, key: str) -> None:
        """One read of `key`: the hot path, an append; counted a batch at a time."""
        pending = self._pending
        if not pending:
            self._tick()
        pending.append(key)
        if len(pending) >= READ_BATCH:
            self._settle()

    def reads(self, keys: Iterable[str]) -> None:
        self._tick()
        for key in keys:
            self._count("read", key)

    def lists(self, prefix: str, returned: int) -> None:
        """One list request (family of its prefix) that returned `returned` keys."""
        self._tick()
        self._count("list", prefix)
        if returned:
            self._count("list_key", prefix, returned)

    def write(self, key: str) -> None:
        """One write of `key` (`put`'s path): noted with its time, counted a batch at a time."""
        now = self._clock()
        if now >= self._next:
            self._tick()  # what is pending counts in the minute that ended
        written = self._written
        written.append(key)
        self._written_at.append(now)
        if len(written) >= READ_BATCH:
            self._settle()

    def writes(self, keys: Iterable[str]) -> None:
        now = self._tick()
        names = list(keys)
        self._note_writes(names, [now] * len(names))

    def deletes(self, keys: Iterable[str]) -> None:
        self._tick()
        for key in keys:
            self._count("delete", key)

    # -- what the meter calls ---------------------------------------------------

    def drain(self) -> list[Bucket]:
        """Every count so far, by (minute, op, family); the tally starts empty."""
        if self._pending or self._written:
            self._settle()
        done, self._done = self._done, []
        done.append((self._minute, self._fresh()))
        return [
            Bucket(minute, self.namespace, op, family, n)
            for minute, ops in done
            for op, by_family in ops.items()
            # A snapshot taken in one C call: a sync store's thread may still be counting.
            for family, n in sorted(dict(by_family).items())
        ]


class Meter:
    """Counts of billable operations for every store it is given to; see the module doc.

    One meter may serve many stores and namespaces; stores of one namespace share
    a tally. No state outside the object: the caller drains it and keeps the counts.
    `memo_keys` bounds the key -> family memo (cleared when full).
    """

    def __init__(
        self,
        family: Family = first_segment,
        *,
        clock: Callable[[], float] = time.time,
        memo_keys: int = MEMO_KEYS,
    ) -> None:
        if not callable(family):
            raise TypeError(f"family must be callable, not {type(family).__name__}")
        if not callable(clock):
            raise TypeError(f"clock must be callable, not {type(clock).__name__}")
        if isinstance(memo_keys, bool) or not isinstance(memo_keys, int) or memo_keys < 1:
            raise ValueError(f"memo_keys must be a positive int, not {memo_keys!r}")
        self.family = family
        self.clock = clock
        self.memo_keys = memo_keys
        self._families: dict[str, str] = {}
        self._tallies: dict[str, Tally] = {}
        self._stored: dict[str, Stored] = {}

    def tally(self, namespace: str) -> Tally:
        """The namespace's tally (made on first use)."""
        found = self._tallies.get(namespace)
        if found is None:
            found = Tally(namespace, self)
            self._tallies[namespace] = found
        return found

    def _family_of(self, key: str) -> str:
        """`family(key)` ("-" when empty), remembered in the bounded memo."""
        found = self.family(key)
        if not isinstance(found, str):
            raise TypeError(f"family() must return str, not {type(found).__name__}")
        found = found or "-"
        if len(self._families) >= self.memo_keys:
            self._families.clear()
        self._families[key] = found
        return found

    def stored(self, namespace: str, nbytes: int | None) -> None:
        """Record a sample of the bytes a namespace holds (None: the store cannot tell)."""
        if nbytes is not None:
            minute = int(self.clock() // 60) * 60
            self._stored[namespace] = Stored(minute, namespace, nbytes)

    def drain(self) -> Reading:
        """Hand out every count and sample since the last drain; the meter starts empty."""
        counts = [bucket for tally in self._tallies.values() for bucket in tally.drain()]
        stored, self._stored = list(self._stored.values()), {}
        return Reading(counts, stored)

    def __repr__(self) -> str:
        return f"<Meter namespaces={sorted(self._tallies)!r}>"


def check_meter(meter: object) -> Meter | None:
    """`meter` if it is a Meter or None; TypeError otherwise (the store's `meter=`)."""
    if meter is not None and not isinstance(meter, Meter):
        raise TypeError(f"meter must be a kvcache.Meter, not {type(meter).__name__}")
    return meter
