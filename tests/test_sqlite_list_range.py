"""SQLite's `list(prefix=...)` ranges the index from the prefix (or the cursor), never from
the start of the namespace: a webhook's invalidation lists a few keys of one customer
beside thousands of tombstones and marks that sort before them."""

from __future__ import annotations

from pathlib import Path

from kvcache.kv.sqlite import SQLiteStore

BELOW = 3000  # keys that sort before the prefix (".deleted:..." < "shop:...")


async def _steps(store: SQLiteStore, prefix: str, cursor: str | None = None) -> tuple[int, int]:
    """(SQLite VM steps / 100, keys listed) for one page of the listing."""
    steps = 0

    def count() -> int:
        nonlocal steps
        steps += 1
        return 0

    store._conn.set_progress_handler(count, 100)
    try:
        page = await store.list(prefix=prefix, cursor=cursor, limit=10)
    finally:
        store._conn.set_progress_handler(None, 100)
    return steps, len(page.keys)


async def test_listing_a_prefix_does_not_scan_the_keys_below_it(tmp_path: Path) -> None:
    store = await SQLiteStore(str(tmp_path / "kv.db"), namespace="CACHE").open()
    try:
        below = [{"key": f".deleted:shop:a:customer:{i:05}", "value": "m"} for i in range(BELOW)]
        await store.put_many(below)
        await store.put_many(
            [{"key": f"shop:a:customer:emails:7:{i}", "value": "e"} for i in range(25)]
        )
        steps, listed = await _steps(store, "shop:a:customer:emails:7:")
        assert listed == 10
        # Scanning the 3,000 keys below costs over 100 of these units; ranging from the
        # prefix, a handful.
        assert steps < 30
        page = await store.list(prefix="shop:a:customer:emails:7:", limit=10)
        steps, listed = await _steps(store, "shop:a:customer:emails:7:", page.cursor)
        assert (listed, steps < 30) == (10, True)
        steps, listed = await _steps(store, "shop:a:customer:emails:8:")
        assert (listed, steps < 30) == (0, True)
        # A cursor past the prefix's keys, and the whole namespace, still page correctly.
        names = [k.name for k in (await store.list(prefix=".deleted:", limit=1000)).keys]
        assert names == [entry["key"] for entry in below[:1000]]
    finally:
        await store.close()
