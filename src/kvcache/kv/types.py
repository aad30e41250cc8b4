"""Plain data that crosses the store contract."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

__all__ = ["KVEntry", "KeyInfo", "ListPage", "Record"]


class Record(NamedTuple):
    """One validated write: the bytes to store, absolute expiry (epoch s) and metadata JSON.

    `ttl` is the expiration_ttl the caller gave (None for an absolute expiry or none):
    a store that expires keys on its own server's clock sends it as given, since an
    absolute time made on this machine's clock can fall a second short there.
    """

    key: str
    value: bytes
    expiration: int | None
    metadata: str | None
    ttl: int | None = None


@dataclass(frozen=True, slots=True)
class KVEntry:
    """`get_with_metadata`'s answer; `value` is None when the key is absent or expired."""

    value: Any
    metadata: Any = None


@dataclass(slots=True)
class KeyInfo:
    """One listed key; `expiration` (epoch s) and `metadata` are None when not set.

    Not frozen: a listing builds up to 1,000 of these, and a frozen dataclass
    costs about three times as much to construct.
    """

    name: str
    expiration: int | None = None
    metadata: Any = None

    def as_dict(self) -> dict[str, Any]:
        """The JSON shape of Workers KV and wrangler: optional fields only when set."""
        out: dict[str, Any] = {"name": self.name}
        if self.expiration is not None:
            out["expiration"] = self.expiration
        if self.metadata is not None:
            out["metadata"] = self.metadata
        return out


@dataclass(frozen=True, slots=True)
class ListPage:
    """A page of `list`; `cursor` is None exactly when `list_complete` is True."""

    keys: list[KeyInfo] = field(default_factory=list)
    list_complete: bool = True
    cursor: str | None = None
