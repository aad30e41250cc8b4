"""The numeric limits a store enforces (Workers KV's by default)."""

from __future__ import annotations

from dataclasses import dataclass

from .errors import KVConfigError, shown

__all__ = ["Limits", "check_server_limits"]


@dataclass(frozen=True, slots=True)
class Limits:
    """Sizes and minimums checked before any I/O.

    Only these numbers change between presets; ordering, replacement and listing
    rules are the same everywhere.
    """

    max_key_bytes: int = 512
    max_value_bytes: int = 26_214_400
    max_metadata_bytes: int = 1024
    min_expiration_ttl: int = 60
    min_cache_ttl: int = 30

    def __post_init__(self) -> None:
        for name in self.__slots__:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"Limits.{name} must be an int, not {type(value).__name__}")
            if value < 0:
                raise ValueError(f"Limits.{name} must be at least 0, not {shown(value)}")

    @classmethod
    def cloudflare(cls) -> Limits:
        """Exactly Workers KV's limits: code that passes here passes on Cloudflare."""
        return cls()

    def looser_than_cloudflare(self) -> list[str]:
        """The fields that allow more than Workers KV does (a server would refuse those)."""
        strict = Limits.cloudflare()
        return [
            name
            for name in ("max_key_bytes", "max_value_bytes", "max_metadata_bytes")
            if getattr(self, name) > getattr(strict, name)
        ] + [
            name
            for name in ("min_expiration_ttl", "min_cache_ttl")
            if getattr(self, name) < getattr(strict, name)
        ]

    @classmethod
    def relaxed(cls) -> Limits:
        """Lifted minimums and sizes, for local stores that need short TTLs or big values."""
        return cls(
            max_key_bytes=65_536,
            max_value_bytes=1 << 30,
            max_metadata_bytes=1 << 20,
            min_expiration_ttl=1,
            min_cache_ttl=0,
        )


def check_server_limits(limits: Limits, store: str) -> None:
    """Refuse limits looser than Workers KV's where its server enforces its own."""
    looser = limits.looser_than_cloudflare()
    if looser:
        raise KVConfigError(
            f"{store} enforces Workers KV's own limits on the server, so limits looser "
            f"than Limits.cloudflare() cannot apply ({', '.join(looser)})"
        )
