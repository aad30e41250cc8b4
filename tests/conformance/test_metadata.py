"""Metadata size (spec 3.2): compact JSON as JSON.stringify writes it, counted in UTF-8 bytes."""

from __future__ import annotations

import json
from contextlib import AbstractContextManager as ContextManager

import pytest

from backends import fresh_key, kv_error
from kvcache import KVStore, KVValidationError


def compact_size(value: object) -> int:
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())


def too_long(size: int) -> ContextManager[pytest.ExceptionInfo[KVValidationError]]:
    return kv_error(f"KV PUT failed: 413 Metadata length of {size} exceeds limit of 1024.", 413)


async def test_1024_bytes_of_non_ascii_metadata_is_accepted(kv: KVStore) -> None:
    metadata = {"k": "é" * 508}  # '{"k":"' + 1016 bytes + '"}' = 1024
    assert compact_size(metadata) == 1024
    key = fresh_key()
    await kv.put(key, "v", metadata=metadata)
    assert (await kv.get_with_metadata(key)).metadata == metadata


async def test_1025_bytes_of_metadata_is_refused(kv: KVStore) -> None:
    metadata = {"k": "é" * 508 + "a"}
    key = fresh_key()
    with too_long(1025):
        await kv.put(key, "v", metadata=metadata)
    assert await kv.get(key) is None


async def test_size_uses_compact_separators(kv: KVStore) -> None:
    metadata = {f"k{i}": i for i in range(100)}
    size = compact_size(metadata)
    assert size <= 1024 < len(json.dumps(metadata).encode())
    await kv.put(fresh_key(), "v", metadata=metadata)


async def test_size_counts_four_byte_characters(kv: KVStore) -> None:
    metadata = "\U0001f600" * 256  # 2 quotes + 1024 bytes
    with too_long(1026):
        await kv.put(fresh_key(), "v", metadata=metadata)
    await kv.put(fresh_key(), "v", metadata="\U0001f600" * 255 + "ab")


async def test_metadata_checked_before_value_size(kv: KVStore) -> None:
    with too_long(compact_size("m" * 2000)):
        await kv.put(fresh_key(), b"x" * 26_214_401, metadata="m" * 2000)


@pytest.mark.parametrize("metadata", [{1, 2}, object(), b"bytes", float("nan")])
async def test_metadata_that_is_not_json_is_type_error(kv: KVStore, metadata: object) -> None:
    key = fresh_key()
    with pytest.raises(TypeError, match="metadata"):
        await kv.put(key, "v", metadata=metadata)
    assert await kv.get(key) is None


async def test_none_metadata_means_no_metadata(kv: KVStore) -> None:
    key = fresh_key()
    await kv.put(key, "v", metadata=None)
    assert (await kv.get_with_metadata(key)).metadata is None
    [info] = (await kv.list()).keys
    assert info.metadata is None
    assert info.as_dict() == {"name": key}


async def test_lone_surrogates_count_as_json_escapes(kv: KVStore) -> None:
    key = fresh_key()
    await kv.put(key, "v", metadata={"s": "\ud800x"})
    assert (await kv.get_with_metadata(key)).metadata == {"s": "\ud800x"}
    [info] = (await kv.list()).keys
    assert info.metadata == {"s": "\ud800x"}
    await kv.put(key, "v", metadata="\udfff" * 170)  # 2 + 170 * 6 = 1022 bytes
    with too_long(1028):
        await kv.put(key, "v", metadata="\udfff" * 171)
