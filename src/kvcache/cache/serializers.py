"""Serializers: how the cache turns values into the strings or bytes a store keeps.

The store only sees str or bytes; a serializer is the one place that knows the
value format (diskcache's `Disk` idea). `JSON` is the default: values must be
JSON-serialisable, and anything else is a `TypeError` to the caller.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

from ..kv._json import dumps, encoder, loads

__all__ = ["JSON", "JsonSerializer", "Serializer"]


@runtime_checkable
class Serializer(Protocol):
    """Turns values into `str` or `bytes` and back.

    `binary` says which: False means `dumps` returns str (stored as UTF-8 text),
    True means bytes. `dumps` raises TypeError for a value it cannot represent;
    `loads` raises ValueError for data it cannot read.
    """

    binary: bool

    def dumps(self, value: Any) -> Any:
        """The stored form of `value` (str, or bytes when `binary`)."""
        ...

    def loads(self, data: Any) -> Any:
        """A fresh value from the stored form."""
        ...


class JsonSerializer:
    """Compact JSON, as JavaScript's JSON.stringify writes it (no NaN, UTF-8 kept).

    `default` converts objects json cannot (for example datetimes to ISO strings);
    such values come back as what `default` returned, not as the original type.
    """

    binary = False

    def __init__(self, *, default: Callable[[Any], Any] | None = None) -> None:
        self._encoder = encoder(default)
        self.loads = loads

    def dumps(self, value: Any) -> str:
        return dumps(value, "value", self._encoder)

    def __repr__(self) -> str:
        return "JsonSerializer()"


#: The default serializer.
JSON = JsonSerializer()
