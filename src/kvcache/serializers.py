"""Moved to `kvcache.cache.serializers`; this import path keeps working."""

from __future__ import annotations

from .cache.serializers import JSON, JsonSerializer, Serializer

__all__ = ["JSON", "JsonSerializer", "Serializer"]
