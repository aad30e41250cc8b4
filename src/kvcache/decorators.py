"""Moved to `kvcache.cache.decorators`; this import path keeps working."""

from __future__ import annotations

from .cache.decorators import CachedFunction, CachingBackend, cached, template_fields

__all__ = ["CachedFunction", "CachingBackend", "cached", "template_fields"]
