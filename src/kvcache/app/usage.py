"""The meter's counts in the app database's history, and back out as a cost `Usage`.

Series (docs/cost.md):

    kv_ops{namespace, op, family}   counter: billable operations per minute, summed over
                                    workers (op: read, write, delete, list, rapid_write,
                                    list_key)
    kv_stored_bytes{namespace}      gauge: bytes of live keys, values and metadata,
                                    sampled from the store every STORED_EVERY seconds
"""

from __future__ import annotations

import json
import time

from ..cost import Usage
from ..kv.meter import Reading
from ..shopify.history import History

__all__ = ["OPS_SERIES", "STORED_EVERY", "STORED_SERIES", "load_usage", "record"]

OPS_SERIES = "kv_ops"
STORED_SERIES = "kv_stored_bytes"
STORED_EVERY = 60.0


def record(history: History, reading: Reading) -> None:
    """Add a meter's drained counts and samples to the history (written in its next flush)."""
    for bucket in reading.counts:
        labels = {"namespace": bucket.namespace, "op": bucket.op, "family": bucket.family}
        history.add(OPS_SERIES, labels, bucket.count, at=bucket.minute)
    for sample in reading.stored:
        history.set(STORED_SERIES, {"namespace": sample.namespace}, sample.nbytes, at=sample.minute)


async def load_usage(history: History, window: float, *, now: float | None = None) -> Usage:
    """Counts over the last `window` seconds, or since the history began if that is later."""
    now = time.time() if now is None else now
    since = now - window
    await history.flush()  # first_minute reads the table only
    first = await history.first_minute(OPS_SERIES)
    if first is None:
        return Usage(0.0)
    start = max(since, float(first))
    counts: dict[tuple[str, str], float] = {}
    for labels, total in (await history.totals(OPS_SERIES, since=start)).items():
        parsed = json.loads(labels)
        slot = (str(parsed.get("op", "")), str(parsed.get("family", "")))
        counts[slot] = counts.get(slot, 0.0) + total
    latest: dict[str, float] = {}
    for point in await history.points(STORED_SERIES, since=start):
        latest[point.labels.get("namespace", "")] = point.value  # oldest first: the last wins
    stored = round(sum(latest.values())) if latest else None
    return Usage(max(0.0, now - start), counts, stored)
