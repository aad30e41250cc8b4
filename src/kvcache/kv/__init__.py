"""The store layer: Workers KV's contract, limits, validation and backends."""

from __future__ import annotations

from .base import Clock, KVStore
from .limits import Limits
from .meter import Meter
from .registry import OpenKV, open_kv
from .types import KeyInfo, KVEntry, ListPage, Record

__all__ = [
    "Clock",
    "KVEntry",
    "KVStore",
    "KeyInfo",
    "Limits",
    "ListPage",
    "Meter",
    "OpenKV",
    "Record",
    "open_kv",
]
